"""Optuna storage from a URL: a SQLite file (default), a journal file (several workers on one host),
or PostgreSQL (many hosts, with heartbeats so a killed worker's trial is failed and retried)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from .spec import SpecError

DEFAULT_STORAGE = "sqlite:///optuna.db"
HEARTBEAT_INTERVAL = 10  # seconds; RETHINK_HEARTBEAT overrides (the grace period is 3 intervals)
SCHEMES = "sqlite:///PATH, journal:PATH (or a path ending in .log), postgresql://USER@HOST/DB"


MAX_RETRIES = 3


def retry_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Enqueue the same parameters again (baselines may lie outside the search space, so this does not go
    through Optuna's validating retry callback); at most MAX_RETRIES times along one chain."""
    retries = int(trial.user_attrs.get("retry_count", 0))
    if retries >= MAX_RETRIES:
        return False
    attrs = {k: v for k, v in trial.user_attrs.items() if k in ("baseline", "baseline_source", "baseline_row")}
    study.enqueue_trial(trial.params, user_attrs=attrs | {"retried_from": trial.number, "retry_count": retries + 1})
    return True


def retry_and_close_run(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial whose worker stopped beating: enqueue its retry and end its MLflow run FAILED."""
    import mlflow

    from .tracking import trial_run_id

    retried = retry_trial(study, trial)
    client = mlflow.MlflowClient()
    if run_id := trial_run_id(client, study.study_name, trial):
        note = "the trial was retried" if retried else f"not retried: {MAX_RETRIES} retries already"
        client.set_tag(run_id, "failure_reason", f"its worker stopped (heartbeat stale); {note}")
        client.set_terminated(run_id, "FAILED")


def is_shared(url: str) -> bool:
    """Shared across hosts: stale trials are left to heartbeats, never failed by a starting worker."""
    return url.startswith(("postgresql", "mysql"))


def allows_parallel(url: str) -> bool:
    """Whether other processes may run trials of the same study (journal files, PostgreSQL); not SQLite."""
    return not url.startswith("sqlite")


def make_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    url = url or DEFAULT_STORAGE
    if url.startswith("journal:") or (url.endswith(".log") and "://" not in url):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql")):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        try:
            interval = int(os.environ.get("RETHINK_HEARTBEAT", HEARTBEAT_INTERVAL))
            return RDBStorage(
                url,
                heartbeat_interval=interval,
                grace_period=3 * interval,
                heartbeat_stale_trial_callback=retry_and_close_run,
                engine_kwargs={"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else None,
            )
        except Exception as e:  # sqlalchemy/driver errors: unreachable host, bad credentials, bad URL
            raise SpecError(f"cannot open Optuna storage {redact(url)}: {str(e).splitlines()[0]}") from e
    raise SpecError(f"unknown storage {redact(url)!r}; valid forms: {SCHEMES}")


def redact(url: str) -> str:
    """The URL without a password, for messages and tags."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def dashboard_command(url: str) -> str:
    """How to open optuna-dashboard on this storage (it takes a journal file as a plain path)."""
    if url.startswith("journal:"):
        return f"optuna-dashboard {Path(url.removeprefix('journal:')).resolve()}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"optuna-dashboard sqlite:///{Path(url.removeprefix('sqlite:///')).resolve()}"
    return f"optuna-dashboard '{redact(url)}'"
