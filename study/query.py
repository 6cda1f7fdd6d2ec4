"""Best configs per study arm, read from the MLflow tracking store or server (not from local files)."""

from __future__ import annotations

import argparse
import json

import mlflow
import pandas as pd

from .spec import SpecError
from .tracking import configure

PARAMS = {"lr": float, "schedule": str, "augment": str, "epochs": int, "weight_decay": float, "batch_size": int}


def best_configs(
    spec_name: str,
    max_flops: float | None = None,
    max_epochs: int | None = None,
    max_pipeline_flops: float | None = None,
    searched_only: bool = False,
) -> pd.DataFrame:
    """One row per study arm: the finished trial with the highest validation accuracy within the budget.
    `baseline` names the baseline a row is (empty for a searched trial); `searched_only` skips baselines."""
    exp = mlflow.get_experiment_by_name(spec_name)
    if exp is None:
        raise SpecError(f"no MLflow experiment named {spec_name!r} at {mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs(
        [exp.experiment_id], "tags.`rethink.kind` = 'trial' and attributes.status = 'FINISHED'", output_format="pandas"
    )
    columns = ["arm", "val_acc", "train_flops", "pipeline_flops", *PARAMS, "baseline", "trial", "study", "run_id"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    if "tags.baseline" not in runs:
        runs["tags.baseline"] = None
    runs["tags.baseline"] = runs["tags.baseline"].fillna("")
    if "metrics.pipeline_flops" not in runs:
        runs["metrics.pipeline_flops"] = runs["metrics.train_flops"]
    if searched_only:
        runs = runs[runs["tags.baseline"] == ""]
    if max_flops is not None:
        runs = runs[runs["metrics.train_flops"] <= max_flops]
    if max_pipeline_flops is not None:
        runs = runs[runs["metrics.pipeline_flops"] <= max_pipeline_flops]
    if max_epochs is not None:
        runs = runs[runs["params.epochs"].astype(int) <= max_epochs]
    rows = []
    runs = runs.assign(trial_number=runs["tags.optuna.trial_number"].astype(int))
    for arm, group in runs.groupby("tags.arm"):
        order = ["metrics.val_acc", "metrics.train_flops", "trial_number"]  # ties: cheaper, then earlier
        best = group.sort_values(order, ascending=[False, True, True]).iloc[0]
        row = {
            "arm": arm,
            "val_acc": float(best["metrics.val_acc"]),
            "train_flops": float(best["metrics.train_flops"]),
            "pipeline_flops": float(best["metrics.pipeline_flops"]),
        }
        for p, kind in PARAMS.items():
            if f"params.{p}" in best and pd.notna(best[f"params.{p}"]):
                row[p] = kind(best[f"params.{p}"])
        row |= {
            "baseline": best["tags.baseline"],
            "trial": int(best["trial_number"]),
            "study": best["tags.optuna.study_name"],
            "run_id": best["run_id"],
        }
        rows.append(row)
    return pd.DataFrame(rows)


def run_best(args: argparse.Namespace) -> int:
    configure(args.tracking_uri)
    table = best_configs(args.spec, args.max_flops, args.max_epochs, args.max_pipeline_flops, args.searched_only)
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), default=str, indent=2))
    else:
        print(table.to_string(index=False) if not table.empty else "no finished trials within that budget")
    return 0
