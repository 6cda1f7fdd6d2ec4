"""Best configs per study arm, read from the MLflow tracking store or server (not from local files)."""

from __future__ import annotations

import mlflow
import pandas as pd

from study.plan.spec import SpecError

from .secrets import redact

PARAMS = {"lr": float, "schedule": str, "augment": str, "epochs": int, "weight_decay": float, "batch_size": int}


def current_studies(spec_name: str) -> tuple[list[str], set[str]]:
    """Where the spec's runs are (in whichever experiment, e.g. one `mlflow run` chose) and the studies its
    latest spec run used: the ones the report of that run reads too."""
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    roots = client.search_runs(
        experiments,
        f"tags.`rethink.spec` = '{spec_name}' and tags.`rethink.kind` = 'spec'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not roots:
        raise SpecError(
            f"no runs of spec {spec_name!r} at {redact(mlflow.get_tracking_uri())}; run `rethink study {spec_name}` "
            f"first, or pass the --tracking-uri it used"
        )
    root = roots[0]
    arms = client.search_runs(
        [root.info.experiment_id], f"tags.`mlflow.parentRunId` = '{root.info.run_id}' and tags.`rethink.kind` = 'arm'"
    )
    return [root.info.experiment_id], {a.data.tags["optuna.study_name"] for a in arms}


def best_configs(
    spec_name: str,
    max_flops: float | None = None,
    max_epochs: int | None = None,
    max_pipeline_flops: float | None = None,
    searched_only: bool = False,
) -> pd.DataFrame:
    """One row per study arm: the finished trial with the highest validation accuracy within the budget.
    `baseline` names the baseline a row is (empty for a searched trial); `searched_only` skips baselines."""
    experiments, studies = current_studies(spec_name)
    runs = mlflow.search_runs(
        experiments,
        f"tags.`rethink.kind` = 'trial' and tags.`rethink.spec` = '{spec_name}' and attributes.status = 'FINISHED'",
        output_format="pandas",
    )
    if not runs.empty:
        runs = runs[runs["tags.optuna.study_name"].isin(studies)]
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
