"""Optuna storage from a URL: a SQLite file (default), a journal file (several workers on one host),
or PostgreSQL (many hosts, with heartbeats so a killed worker's trial is failed and retried)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from study.plan.spec import SpecError

from .paths import writable_dir
from .secrets import redact, scrub

DEFAULT_STORAGE = "sqlite:///optuna.db"
HEARTBEAT_INTERVAL = 10  # seconds; RETHINK_HEARTBEAT overrides (the grace period is 3 intervals)
SCHEMES = (
    "sqlite:///PATH, journal:PATH (or a path ending in .log), postgresql://USER@HOST/DB, grpc://HOST:PORT (a storage "
    "served by Optuna's gRPC proxy)"
)


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

    from .tracking import terminate, trial_run_id

    retried = retry_trial(study, trial)
    client = mlflow.MlflowClient()
    if run_id := trial_run_id(client, study.study_name, trial):
        note = "the trial was retried" if retried else f"not retried: {MAX_RETRIES} retries already"
        terminate(client, run_id, "FAILED", f"its worker stopped (heartbeat stale); {note}")


def is_shared(url: str) -> bool:
    """Shared across hosts: stale trials are left to heartbeats, never failed by a starting worker."""
    return url.startswith(("postgresql", "mysql"))


def allows_parallel(url: str) -> bool:
    """Whether other processes may run trials of the same study (journal files, PostgreSQL); not SQLite."""
    return not url.startswith("sqlite")


def storage_url(given: str | None) -> str:
    """--storage, else env RETHINK_STORAGE (keeps a password off command lines), else the default."""
    return given or os.environ.get("RETHINK_STORAGE") or DEFAULT_STORAGE


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or (url.endswith(".log") and "://" not in url)


def local_storage_path(url: str) -> Path | None:
    """The file of a single-host storage (SQLite, journal), or None for a server."""
    if is_journal(url):
        return Path(url.removeprefix("journal:")).absolute()
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///").split("?")[0]).absolute()
    return None


def make_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    url = url or DEFAULT_STORAGE
    if url.startswith("grpc://"):
        return _grpc_proxy(url)
    if is_journal(url):
        raw = url.removeprefix("journal:")
        path = Path(raw)
        if not raw.strip():
            raise SpecError(f"--storage {url!r}: the journal needs a file path, e.g. journal:optuna.log")
        if path.is_dir():
            raise SpecError(f"--storage {url!r}: {path} is a folder; give a file in it, e.g. journal:{path}/optuna.log")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise SpecError(f"--storage {url!r}: cannot open the journal file ({e.strerror or e})") from None
    if (path := local_storage_path(url)) is not None:  # SQLite: its folder must take the file
        writable_dir(path.parent, f"--storage {redact(url)}: the folder")
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
            first = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__, url)
            raise SpecError(f"cannot open Optuna storage {redact(url)}: {first}") from None
    raise SpecError(f"unknown storage {redact(url)!r}; valid forms: {SCHEMES}")


def _grpc_proxy(url: str) -> optuna.storages.BaseStorage:
    """A storage served by Optuna's gRPC proxy (the Ray engine serves the driver's SQLite file this way)."""
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(f"--storage {url!r}: expected grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000")
    try:
        from optuna.storages import GrpcStorageProxy

        return GrpcStorageProxy(host=host, port=int(port))
    except ImportError as e:
        raise SpecError(f"--storage {url}: the gRPC proxy needs grpcio ({e}); pip install grpcio protobuf") from None


def dashboard_command(url: str) -> str:
    """How to open optuna-dashboard on this storage (it takes a journal file as a plain path)."""
    if url.startswith("journal:"):
        return f"optuna-dashboard {Path(url.removeprefix('journal:')).resolve()}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"optuna-dashboard sqlite:///{Path(url.removeprefix('sqlite:///')).resolve()}"
    return f"optuna-dashboard '{redact(url)}'"
