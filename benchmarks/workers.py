"""Trials per hour with 1, 2 and 4 worker processes on one host sharing one journal storage, on a fixed
small spec (default: the tests' tiny digits spec; on a GPU, `--spec benchmarks/resnet56-workers.toml
--device cuda`); checks the record too (trial counts, no duplicate runs, no lost trials). One JSON."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SPEC = REPO / "tests" / "tiny.toml"


def check_record(storage: str, tracking: str, spec_name: str, arms: list[str], budget: int) -> dict:
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from study.records.storage import make_storage

    mlflow.set_tracking_uri(tracking)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(spec_name)
    runs = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'", max_results=10000)
    record = {"complete_per_arm": {}, "duplicate_runs": 0, "lost_trials": 0, "running_runs": 0}
    for arm in arms:
        trials = optuna.load_study(study_name=f"{spec_name}.{arm}", storage=make_storage(storage)).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        record["complete_per_arm"][arm] = len([t for t in complete if "baseline" not in t.user_attrs])
        record["lost_trials"] += sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
        ids = [r.info.run_id for r in runs if r.data.tags["arm"] == arm and r.info.status == "FINISHED"]
        record["duplicate_runs"] += len(ids) - len({t.user_attrs["mlflow_run_id"] for t in complete})
    record["running_runs"] = sum(r.info.status == "RUNNING" for r in runs)
    record["ok"] = (
        all(n == budget for n in record["complete_per_arm"].values())
        and not record["duplicate_runs"]
        and not record["lost_trials"]
        and not record["running_runs"]
    )
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--trials", type=int, default=8, help="searched trials per study (one runs in the warm-up)")
    p.add_argument("--spec", default=str(SPEC))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="spec overrides")
    p.add_argument("--epochs", type=int, default=2, help="every trial's epochs (fixed, so trials cost the same)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    from study.plan.layout import study_arms
    from study.plan.load import load_spec

    # Every trial (baselines included) runs the same epochs: the base's E, judged at E alone (a throughput
    # benchmark; the paper's fine-tune baseline, at E/4 epochs, would lie outside such a space).
    fixed = [
        *args.set,
        f"base.epochs={args.epochs}",
        f"space.epochs={{low={args.epochs}, high={args.epochs}}}",
        'verdict.budgets=["E"]',
        'verdict.primary="1@E"',
        "study.baselines=[]",
    ]
    spec = load_spec(args.spec, fixed)
    arms = study_arms(spec)  # the Optuna studies (pareto mode: one scratch study)
    sets = [x for kv in fixed for x in ("--set", kv)]
    results = []
    for n in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            storage, tracking = f"journal:{tmp}/optuna.log", f"sqlite:///{tmp}/mlflow.db"
            cmd = [
                sys.executable,
                "-m",
                "study.commands.cli",
                "study",
                args.spec,
                *sets,
                "--device",
                args.device,
                "--storage",
                storage,
                "--workdir",
                f"{tmp}/runs",
                "--workers",
                str(n),
                "--no-report",
                "--set",
                f"study.n_trials={args.trials}",
            ]
            env = os.environ | {"MLFLOW_TRACKING_URI": tracking}
            # the base and pruned models are made first, untimed, so the timing covers the trials only
            subprocess.run(
                [*cmd[:-2], "--set", "study.n_trials=1", "--workers", "1"],
                env=env,
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            start = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
            wall = time.perf_counter() - start
            total = (args.trials - 1) * len(arms)  # searched trials; the warm-up ran 1 per study
            results.append(
                {
                    "workers": n,
                    "wall_seconds": wall,
                    "trials": total,
                    "trials_per_hour": total / wall * 3600,
                    "record": check_record(storage, tracking, spec.name, arms, args.trials),
                }
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    one = results[0]["trials_per_hour"]
    for r in results:
        r["speedup_vs_1"] = r["trials_per_hour"] / one
    out = {"benchmark": "workers", "spec": spec.name, "device": args.device, "cpus": os.cpu_count()}
    print(json.dumps(out | {"storage": "journal file", "results": results}))


if __name__ == "__main__":
    main()
