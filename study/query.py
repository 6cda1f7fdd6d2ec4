"""Best configs per arm, read from the MLflow tracking store or server (not from local files)."""

from __future__ import annotations

import argparse
import json

import mlflow
import pandas as pd

from .spec import SpecError
from .tracking import configure

PARAMS = ("lr", "augment", "epochs", "weight_decay", "batch_size")


def best_configs(spec_name: str, max_flops: float | None = None, max_epochs: int | None = None) -> pd.DataFrame:
    """One row per arm: the finished trial with the highest validation accuracy within the budget."""
    exp = mlflow.get_experiment_by_name(spec_name)
    if exp is None:
        raise SpecError(f"no MLflow experiment named {spec_name!r} at {mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs(
        [exp.experiment_id], "tags.`rethink.kind` = 'trial' and attributes.status = 'FINISHED'", output_format="pandas"
    )
    if runs.empty:
        return pd.DataFrame(columns=["arm", "val_acc", "train_flops", *PARAMS, "trial", "run_id"])
    if max_flops is not None:
        runs = runs[runs["metrics.train_flops"] <= max_flops]
    if max_epochs is not None:
        runs = runs[runs["params.epochs"].astype(int) <= max_epochs]
    rows = []
    runs = runs.assign(trial_number=runs["tags.optuna.trial_number"].astype(int))
    for arm, group in runs.groupby("tags.arm"):
        order = ["metrics.val_acc", "metrics.train_flops", "trial_number"]  # ties: cheaper, then earlier
        best = group.sort_values(order, ascending=[False, True, True]).iloc[0]
        row = {"arm": arm, "val_acc": best["metrics.val_acc"], "train_flops": best["metrics.train_flops"]}
        for p in PARAMS:
            if f"params.{p}" in best and pd.notna(best[f"params.{p}"]):
                row[p] = best[f"params.{p}"]
        row |= {
            "trial": int(best["trial_number"]),
            "study": best["tags.optuna.study_name"],
            "run_id": best["run_id"],
        }
        rows.append(row)
    return pd.DataFrame(rows)


def run_best(args: argparse.Namespace) -> int:
    configure(args.tracking_uri)
    table = best_configs(args.spec, args.max_flops, args.max_epochs)
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), default=str, indent=2))
    else:
        print(table.to_string(index=False) if not table.empty else "no finished trials within that budget")
    return 0
