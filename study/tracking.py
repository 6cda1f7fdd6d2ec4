"""MLflow: tracking URI, per-epoch metric logging, run status with reasons, dataset inputs."""

from __future__ import annotations

import hashlib
import os

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource

from rethink.data import Dataset
from rethink.train import Callback, EpochMetrics

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def configure(tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at `tracking_uri` (env MLFLOW_TRACKING_URI, else ./mlflow.db) and the experiment.

    Under `mlflow run` the project run (MLFLOW_RUN_ID) fixes the experiment, so it is left alone.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    if experiment and not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(experiment)
    return uri


def epoch_metrics_dict(m: EpochMetrics, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}train_loss": m.train_loss,
        f"{prefix}train_acc": m.train_acc,
        f"{prefix}eval_loss": m.eval_loss,
        f"{prefix}eval_acc": m.eval_acc,
        f"{prefix}lr": m.lr,
        f"{prefix}images_per_s": m.images_per_s,
    }


class MlflowEpochLogger(Callback):
    """Logs each epoch's figures to one run in a single batched call, keyed by the eval split's name."""

    def __init__(self, run_id: str, eval_name: str = "val"):
        self.client = mlflow.MlflowClient()
        self.run_id, self.eval_name = run_id, eval_name

    def on_epoch_end(self, metrics: EpochMetrics, model) -> None:
        values = epoch_metrics_dict(metrics)
        values[f"{self.eval_name}_loss"] = values.pop("eval_loss")
        values[f"{self.eval_name}_acc"] = values.pop("eval_acc")
        ts = mlflow.utils.time.get_current_time_millis()
        self.client.log_batch(
            self.run_id,
            metrics=[mlflow.entities.Metric(k, float(v), ts, metrics.epoch) for k, v in values.items()],
            synchronous=True,
        )


def log_dataset(ds: Dataset, context: str = "training") -> None:
    """Record the dataset as an MLflow input (name, digest, shape), without uploading the images."""
    source = CodeDatasetSource({"dataset": ds.name, "loader": "rethink.data.load_dataset"})
    data = mlflow.data.from_numpy(
        ds.x_train, targets=ds.y_train, name=ds.name, source=source, digest=dataset_digest(ds)
    )
    mlflow.log_input(data, context=context)


def dataset_digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def end_failed(reason: str, status: str = "FAILED") -> None:
    """End the active run with `status` and the reason as a tag, never leaving it RUNNING."""
    mlflow.set_tag("failure_reason", reason[:5000])
    mlflow.end_run(status)
