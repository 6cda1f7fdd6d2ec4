"""Share of a trial's wall time spent outside training (Optuna storage, MLflow logging, arm set-up),
for the quick spec and the cifar10-5k spec (its own epoch space, 3 trials per arm), plus the worker's
peak resident memory. One JSON object."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(spec_path: str, overrides: list[str]) -> dict:
    import optuna

    from study.plan.load import load_spec
    from study.search.runner import RunOptions, run_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(spec_path, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        opts = RunOptions(storage=f"sqlite:///{tmp}/optuna.db", workdir=Path(tmp) / "runs")
        start = time.perf_counter()
        result = run_spec(spec, opts)
        wall = time.perf_counter() - start
    fractions = {a.arm: a.overhead_fraction for a in result.arms}
    return {
        "spec": spec.name,
        "trials": sum(a.n_done for a in result.arms),
        "wall_seconds": wall,
        "overhead_fraction_per_arm": fractions,
        "overhead_fraction_max": max(fractions.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick-trials", type=int, default=6)
    p.add_argument("--cifar-trials", type=int, default=3, help="0 skips the cifar10-5k spec")
    p.add_argument("--short", action="store_true", help="cifar10-5k, 3-epoch base (caps shrink)")
    args = p.parse_args()
    out = {"benchmark": "study_overhead", "results": []}
    out["results"].append(run("quick", [f"study.n_trials={args.quick_trials}"]))
    out["peak_rss_gib_after_quick"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if args.cifar_trials:
        short = ["base.epochs=3"] if args.short else []
        out["results"].append(
            run(str(REPO / "benchmarks" / "cifar5k.toml"), [f"study.n_trials={args.cifar_trials}", *short])
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
