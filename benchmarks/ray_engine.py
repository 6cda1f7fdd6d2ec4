"""The Ray engine's cost and gain on one machine: the quick spec (the main job: study then report) under the
local engine, under `--engine ray` one run at a time (`--cpus-per-run` = all cores: the engine's own cost),
and under `--engine ray` with 2 runs at once (`--cpus-per-run` = cores / 2: the gain of running two at
once), in turn, each in a fresh folder, one command at a time. Prints one JSON object: wall times, their
medians and the ratios to the local engine and between the two Ray settings, all measured in one run.
With --write, also benchmarks/results/ray_engine.json."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


CONFIGS = ("local", "ray-1-at-once", "ray-2-at-once")


def run_once(engine: str, spec: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db", RETHINK_RAY_WORKDIR=f"{tmp}/tasks")
        cmd = [sys.executable, "-m", "study.commands.cli", "study", spec, *extra]
        cmd += ["--storage", f"sqlite:///{tmp}/optuna.db", "--workdir", f"{tmp}/runs", "--report-dir", f"{tmp}/rep"]
        if engine != "local":
            at_once = int(engine.split("-")[1])
            cpus = max(1, (os.cpu_count() or 2) // at_once)
            cmd += ["--engine", "ray", "--cpus-per-run", str(cpus), "--gpus-per-run", "0"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{engine}: exit {done.returncode}\n{done.stderr[-3000:]}")
        verdict = json.loads(Path(tmp, "rep", spec.split("/")[-1].removesuffix(".toml"), "verdict.json").read_text())
    return {"engine": engine, "wall_s": round(wall, 1), "primary": verdict["primary"][:160]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spec", default="quick")
    p.add_argument("--repeats", type=int, default=1, help="rounds of the three configurations, in turn")
    p.add_argument("--set", action="append", default=[], help="spec overrides, as for rethink study")
    p.add_argument("--write", action="store_true", help="also write benchmarks/results/ray_engine.json")
    args = p.parse_args()
    extra = [f"--set={s}" for s in args.set]
    runs = []
    for _ in range(args.repeats):
        for engine in CONFIGS:
            runs.append(run_once(engine, args.spec, extra))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    median = {c: statistics.median(r["wall_s"] for r in runs if r["engine"] == c) for c in CONFIGS}
    import ray as ray_module
    import torch

    out = {
        "benchmark": "ray_engine",
        "spec": args.spec,
        "overrides": args.set,
        "runs": runs,
        "median_wall_s": median,
        "ratio_ray_1_over_local": round(median["ray-1-at-once"] / median["local"], 3),  # the engine's cost
        "ratio_ray_2_over_local": round(median["ray-2-at-once"] / median["local"], 3),
        "speedup_2_at_once_over_1": round(median["ray-1-at-once"] / median["ray-2-at-once"], 3),
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU used",
        "date": datetime.date.today().isoformat(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": ray_module.__version__},
    }
    print(json.dumps(out))
    if args.write:
        (REPO / "benchmarks" / "results" / "ray_engine.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
