"""The quick main job end to end (`rethink study quick`: base, prune, studies, final evaluation, report),
with fusion off and on, back to back on the same machine, each time in a fresh folder (nothing reused).

Reports per setting the median wall time of the whole command, of its final evaluation (first final run
made to last final run ended, from the MLflow store) and of the phase before it (base, prune, trials),
and the ratios off/on measured in the same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def phases(folder: Path, spec: str) -> dict[str, float]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name(spec)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    (root,) = [r for r in runs if r.data.tags.get("rethink.kind") == "spec"]
    finals = [r for r in runs if r.data.tags.get("rethink.kind") == "final"]
    first, last = min(r.info.start_time for r in finals), max(r.info.end_time for r in finals)
    return {"final_s": (last - first) / 1000, "before_final_s": (first - root.info.start_time) / 1000}


def once(spec: str, fuse: str, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"fuse-{fuse}-") as tmp:
        folder = Path(tmp)
        cmd = [sys.executable, "-m", "study.commands.cli", "study", spec, "--fuse", fuse, *extra]
        env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return {"wall_s": wall, **phases(folder, spec)}


def _versions() -> dict[str, str]:
    import mlflow
    import optuna
    import torch

    return {"torch": torch.__version__, "mlflow": mlflow.__version__, "optuna": optuna.__version__,
            "python": platform.python_version()}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="quick")
    p.add_argument("--repeats", type=int, default=3, help="off/on pairs, alternating")
    p.add_argument("--on", default="auto", help="the fused setting to compare with off (auto, parallel, stacked)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="spec overrides")
    args = p.parse_args()
    extra = [f"--set={s}" for s in args.set]
    runs: dict[str, list[dict[str, float]]] = {"off": [], args.on: []}
    for i in range(args.repeats):
        for fuse in ("off", args.on) if i % 2 == 0 else (args.on, "off"):  # alternate, so drift hits both
            runs[fuse].append(once(args.spec, fuse, extra))
            print(json.dumps({"repeat": i, "fuse": fuse, **runs[fuse][-1]}), file=sys.stderr, flush=True)
    median = {f: {k: round(statistics.median(r[k] for r in rs), 1) for k in rs[0]} for f, rs in runs.items()}
    off, on = median["off"], median[args.on]
    import torch

    print(
        json.dumps(
            {
                "benchmark": "fuse_main_job",
                "date": date.today().isoformat(),
                "device": f"{torch.get_num_threads()}-thread {platform.machine()} CPU"
                if not torch.cuda.is_available()
                else torch.cuda.get_device_name(),
                "versions": _versions(),
                "commit": subprocess.run(
                    ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
                ).stdout.strip(),
                "command": f"rethink study {args.spec} --fuse off|{args.on} {' '.join(extra)}".strip(),
                "repeats": args.repeats,
                "median": median,
                "speedup": {k: round(off[k] / on[k], 2) for k in off},
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
