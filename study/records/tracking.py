"""MLflow: tracking URI, per-epoch metric logging, run status with reasons, dataset inputs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from optuna.trial import FrozenTrial

from rethink.data import Dataset
from rethink.train import Callback, EpochMetrics

from .secrets import redact
from .signals import shielded

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
# A tracking server's calls are bounded: each waits at most HTTP_TIMEOUT_S, with HTTP_RETRIES retries
# (backoff 1 s, 2 s), so a server that is down is reported within about 15 s, never after minutes.
HTTP_TIMEOUT_S, HTTP_RETRIES = 4, 2

# Every run this process opened (created, or set RUNNING again) and has not ended: whatever ends the
# process, `close_open_runs` ends them with the right status (see study/lifecycle.py). Each write that makes,
# reopens or ends a run and notes it here runs under `shielded()`: a Ctrl-C in between cannot leave a run
# made in the store but missing here (RUNNING for ever) or a store transaction half done.
_OPEN: dict[str, mlflow.MlflowClient] = {}


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached, or stopped answering."""


def configure(tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at `tracking_uri` (env MLFLOW_TRACKING_URI, else ./mlflow.db) and the experiment; a
    server that does not answer is reported at once (TrackingUnavailable), before anything trains.

    Under `mlflow run` the project run (MLFLOW_RUN_ID) fixes the experiment, so it is left alone.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_S))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_RETRIES))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if experiment and not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(experiment)
    return uri


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """One bounded request to the server's /health; any HTTP answer means it is up."""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
    except requests.RequestException as e:
        reason = type(e).__name__.replace("Error", " error").replace("Timeout", "timeout").strip()
        raise TrackingUnavailable(
            f"MLflow tracking server {redact(uri)} does not answer ({reason}); start it (e.g. `rethink serve`) "
            f"or pass another --tracking-uri"
        ) from None


def is_tracking_outage(e: BaseException) -> bool:
    """Whether `e` comes from a tracking server that cannot be reached (not from a bad request)."""
    import requests

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (TrackingUnavailable, requests.ConnectionError, requests.Timeout)):
            return True
        text = str(e)
        if isinstance(e, mlflow.exceptions.MlflowException) and (
            "Max retries exceeded" in text or ("API request to" in text and "failed with exception" in text)
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def close_open_runs(status: str, reason: str | None = None) -> list[str]:
    """End every run this process opened and did not end; returns their ids. Best effort per run: one
    that cannot be ended (a server gone) is left for the next run of the spec to reconcile."""
    closed = []
    for run_id, client in list(_OPEN.items()):
        with contextlib.suppress(Exception):  # the process is ending; the next run reconciles
            terminate(client, run_id, status, reason)
            closed.append(run_id)
        _OPEN.pop(run_id, None)
    return closed


def terminate(client: mlflow.MlflowClient, run_id: str, status: str, reason: str | None) -> None:
    """End a run with `status`; the reason goes in `failure_reason` (or `note` when it finished)."""
    with shielded():
        if reason:
            client.set_tag(run_id, "failure_reason" if status != "FINISHED" else "note", reason[:5000])
        client.set_terminated(run_id, status)


def start_run(run_name: str) -> mlflow.ActiveRun:
    """`mlflow.start_run` (the fluent run of `rethink train` / `prune`), made and noted as active in one
    shielded step, so that a Ctrl-C cannot leave it made but unknown to `close_open_runs`' fluent pass."""
    with shielded():
        return mlflow.start_run(run_name=run_name)


def epoch_metrics_dict(m: EpochMetrics, eval_name: str = "val") -> dict[str, float]:
    """One epoch's figures under MLflow keys; the evaluation split names its own (val_acc, test_acc)."""
    return {
        "train_loss": m.train_loss,
        "train_acc": m.train_acc,
        f"{eval_name}_loss": m.eval_loss,
        f"{eval_name}_acc": m.eval_acc,
        "lr": m.lr,
        "images_per_s": m.images_per_s,
    }


class MlflowEpochLogger(Callback):
    """Logs each epoch's figures to one run, keyed by the eval split's name, in batched calls: epochs are
    buffered and sent at most once per `flush_s` seconds, and when training stops for any reason (unless
    `flush_at_end` is off: then the owner sends the rest, with `flush()` or in `RunTree.finish`)."""

    def __init__(self, run_id: str, eval_name: str = "val", flush_s: float = 5.0, flush_at_end: bool = True):
        self.client = mlflow.MlflowClient()
        self.run_id, self.eval_name, self.flush_s, self.flush_at_end = run_id, eval_name, flush_s, flush_at_end
        self.pending: list[mlflow.entities.Metric] = []
        self.last_flush = time.monotonic()
        self.seconds = 0.0  # time spent logging, to report tracking overhead

    def on_epoch_end(self, metrics: EpochMetrics, model) -> None:
        ts = mlflow.utils.time.get_current_time_millis()
        values = epoch_metrics_dict(metrics, self.eval_name)
        self.pending += [mlflow.entities.Metric(k, float(v), ts, metrics.epoch) for k, v in values.items() if v == v]
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def on_train_end(self, history) -> None:
        if self.flush_at_end:
            self.flush()

    def take(self) -> list[mlflow.entities.Metric]:
        """The epochs not sent yet, handed over to be sent with the run's final figures."""
        pending, self.pending = self.pending, []
        return pending

    def flush(self) -> None:
        start = time.perf_counter()
        with shielded():
            for i in range(0, len(self.pending), MAX_METRICS_PER_BATCH):
                batch = self.pending[i : i + MAX_METRICS_PER_BATCH]
                self.client.log_batch(self.run_id, metrics=batch, synchronous=True)
            self.pending = []
        self.last_flush = time.monotonic()
        self.seconds += time.perf_counter() - start


def trial_run_id(
    client: mlflow.MlflowClient, study_name: str, trial: FrozenTrial, experiment_ids: list[str] | None = None
) -> str | None:
    """The MLflow run of an Optuna trial: its user attribute, or, when the process died between creating
    the run and recording it, the run tagged with the study and trial number."""
    if run_id := trial.user_attrs.get("mlflow_run_id"):
        return run_id
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiment_ids,
        f"tags.`rethink.kind` = 'trial' and tags.`optuna.study_name` = '{study_name}' "
        f"and tags.`optuna.trial_number` = '{trial.number}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


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


class RunTree:
    """The MLflow run tree of DESIGN.md §5, with explicit parent ids (no fluent nesting).

    Under `mlflow run` the project run (MLFLOW_RUN_ID) is the root; otherwise the root is the spec run
    found again by its digest, so re-running a spec resumes into the same tree.
    """

    def __init__(self, experiment: str, experiment_id: str | None = None):
        self.client = mlflow.MlflowClient()
        project_run = os.environ.get("MLFLOW_RUN_ID")
        if experiment_id is not None:  # a Ray task joins its driver's tree
            self.experiment_id = experiment_id
        elif project_run:
            self.experiment_id = self.client.get_run(project_run).info.experiment_id
        else:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)

    def find(self, tags: dict[str, str], parent: str | None = None) -> str | None:
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        if parent:
            clauses.append(f"tags.`mlflow.parentRunId` = '{parent}'")
        runs = self.client.search_runs(
            [self.experiment_id], " and ".join(clauses), max_results=1, order_by=["attributes.start_time DESC"]
        )
        return runs[0].info.run_id if runs else None

    def root(self, name: str, tags: dict[str, str], reopen: bool = True) -> str:
        """The spec run; made, or set RUNNING again (unless `reopen` is off: a worker only finds it)."""
        project_run = os.environ.get("MLFLOW_RUN_ID")
        run_id = project_run or self.find({"rethink.kind": "spec", **tags})
        if run_id is None:
            with shielded():
                run_id = self.client.create_run(
                    self.experiment_id, run_name=name, tags={"rethink.kind": "spec", **tags}
                ).info.run_id
                _OPEN[run_id] = self.client
        elif reopen:
            if not project_run:  # the project run belongs to `mlflow run`, which ends it
                self.reopen(run_id)
            else:  # a readable name in the UI instead of MLflow's random one, and the spec run's kind
                self.client.update_run(run_id, name=name)
                self.client.set_tag(run_id, "rethink.kind", "spec")
            for k, v in tags.items():
                self.client.set_tag(run_id, k, v)
        return run_id

    def child(self, parent: str, name: str, kind: str, tags: dict[str, str], reuse: bool = True) -> str:
        """A child run of `parent`; with reuse, the one made before with the same kind and tags."""
        tags = {"rethink.kind": kind, **{k: str(v) for k, v in tags.items()}}
        if reuse and (run_id := self.find(tags, parent)):
            return run_id
        tags["mlflow.parentRunId"] = parent
        with shielded():
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            _OPEN[run_id] = self.client
        return run_id

    def reopen(self, run_id: str) -> None:
        """Set a found run RUNNING again while this process works in it (its end is then guaranteed)."""
        with shielded():
            self.client.update_run(run_id, status="RUNNING")
            _OPEN[run_id] = self.client

    def record(self, parent: str, name: str, kind: str, tags: dict[str, str], note: str) -> str:
        """A child run that only points at work done elsewhere: made and ended FINISHED at once."""
        run_id = self.child(parent, name, kind, tags, reuse=False)
        self.end(run_id, "FINISHED", note)
        return run_id

    def log_params(self, run_id: str, params: dict, fresh: bool = False) -> None:
        """Log params not logged yet (a resumed run keeps its first values); `fresh` skips the lookup."""
        from mlflow.entities import Param

        have = {} if fresh else self.client.get_run(run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
        if new:
            with shielded():
                self.client.log_batch(run_id, params=new, synchronous=True)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        ts = mlflow.utils.time.get_current_time_millis()
        with shielded():
            self.client.log_batch(
                run_id,
                metrics=[mlflow.entities.Metric(k, float(v), ts, step) for k, v in metrics.items()],
                synchronous=True,
            )

    def finish(
        self,
        run_id: str,
        status: str,
        metrics: dict[str, float],
        tags: dict[str, str],
        step: int = 0,
        pending: list[mlflow.entities.Metric] = (),
    ) -> None:
        """Unsent epoch figures, final metrics and tags in one call (more past MLflow's 1,000 a batch),
        then the status: two calls per trial end."""
        ts = mlflow.utils.time.get_current_time_millis()
        batch = [*pending, *(mlflow.entities.Metric(k, float(v), ts, step) for k, v in metrics.items())]
        run_tags = [mlflow.entities.RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        room = MAX_METRICS_PER_BATCH - len(run_tags)
        with shielded():
            while len(batch) > room:
                self.client.log_batch(run_id, metrics=batch[:MAX_METRICS_PER_BATCH], synchronous=True)
                batch = batch[MAX_METRICS_PER_BATCH:]
            self.client.log_batch(run_id, metrics=batch, tags=run_tags, synchronous=True)
            self.client.set_terminated(run_id, status)
            _OPEN.pop(run_id, None)

    def end(self, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
        with shielded():
            terminate(self.client, run_id, status, reason)
            _OPEN.pop(run_id, None)

    def end_quietly(self, run_id: str, status: str, reason: str) -> None:
        """End a run while something else has gone wrong: a tracking error here must not hide that one."""
        with contextlib.suppress(Exception):  # left in _OPEN or RUNNING: closed at exit or reconciled next run
            self.end(run_id, status, reason)
