"""The README's quick results, reproduced: the main job (`rethink study quick`, study then report) run
once per search seed (`--set study.seed=S`), each in a fresh folder, one at a time. Prints one JSON object
(and writes it to benchmarks/results/quick_results.json with --write): per seed the wall time, the
primary verdict, every claim's verdict and estimate, and each row's pick; then how much the picks and the
verdicts move across the seeds."""

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


def run_once(seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        cmd = [sys.executable, "-m", "study.commands.cli", "study", "quick", "--set", f"study.seed={seed}"]
        cmd += ["--storage", f"sqlite:///{tmp}/optuna.db", "--workdir", f"{tmp}/runs", "--report-dir", f"{tmp}/rep"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        verdict = json.loads(Path(tmp, "rep", "quick", "verdict.json").read_text())
    claims = {
        c["claim"].split(":")[0]: {
            "verdict": c["verdict"],
            "estimate_pp": None if c.get("diff") is None else round(100 * c["diff"], 2),
            "ci_pp": None if c.get("ci_low") is None else [round(100 * c["ci_low"], 2), round(100 * c["ci_high"], 2)],
        }
        for c in verdict["claims"]
    }
    picks = {
        f"{p['arm']}:{p['pick']}": {"trial": p["trial"], "is": p["is"], "epochs": p["epochs"]}
        for p in verdict["picks"]
        if p["pick"].startswith("best")
    }
    tests = {f"{r['arm']}:{r['choice']}": round(r["test_acc_mean"] * 100, 2) for r in verdict["table"]}
    carry = {
        f"{r['arm']}:{r['pick']}": {
            "val_pct": round(100 * r["val mean"], 2),
            "val_runs": r["val runs"],
            "val_bases": r["val bases"],
            "test_pct": round(100 * r["test mean"], 2),
            "gap_pp": round(100 * r["gap"], 2),
            "beyond_noise": r["beyond noise"],
        }
        for r in verdict.get("validation_to_test", [])
        if r["pick"].startswith("best") or r["pick"] == "rewind"
    }
    return {
        "seed": seed,
        "wall_s": round(wall, 1),
        "primary": verdict["primary"],
        "claims": claims,
        "picks": picks,
        "test_acc_pct": tests,
        "validation_to_test": carry,
        "picks_below_baselines": verdict.get("picks_below_baselines", []),
    }


def movement(runs: list[dict]) -> dict:
    """How much the seeds disagree: each claim's verdicts and estimate range, each tuned row's test accuracy."""
    out = {"claims": {}, "tuned_rows_test_acc_pct": {}}
    for claim in runs[0]["claims"]:
        verdicts = [r["claims"].get(claim, {}).get("verdict", "absent") for r in runs]
        est = [r["claims"][claim]["estimate_pp"] for r in runs if r["claims"].get(claim, {}).get("estimate_pp")]
        out["claims"][claim] = {
            "verdicts": verdicts,
            "same_verdict": len({v.split(" (")[0].split(";")[0] for v in verdicts}) == 1,
            "estimate_pp_range": [min(est), max(est)] if est else None,
        }
    for row in runs[0]["test_acc_pct"]:
        if ":best" in row:
            vals = [r["test_acc_pct"].get(row) for r in runs]
            out["tuned_rows_test_acc_pct"][row] = {"per_seed": vals, "spread": round(max(vals) - min(vals), 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search (sampler) seeds")
    p.add_argument("--write", action="store_true", help="also write benchmarks/results/quick_results.json")
    args = p.parse_args()
    runs = [run_once(s) for s in args.seeds]
    import mlflow
    import optuna
    import torch

    out = {
        "benchmark": "quick_results",
        "date": datetime.date.today().isoformat(),
        "device": f"{os.cpu_count()}-thread {platform.machine()} CPU",
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "mlflow": mlflow.__version__,
            "optuna": optuna.__version__,
        },
        "command": "rethink study quick --set study.seed=S (study then report), one seed at a time",
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "runs": runs,
        "movement": movement(runs),
    }
    text = json.dumps(out, indent=1)
    if args.write:
        (REPO / "benchmarks" / "results" / "quick_results.json").write_text(text + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
