"""How a `rethink` process ends, in one place: whatever ends it (success, a user error, any exception,
SIGINT, SIGTERM), every MLflow run it opened is ended with the status that says why, and the exit code
says it too. Exit codes: 0 done, 1 a bug (traceback), 2 a user error (one line), 3 a service
(tracking server, storage) unreachable, 130 SIGINT, 143 SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Callable

from . import signals
from .secrets import redact
from .signals import Terminated

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_SERVICE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 3, 130, 143


def _close_runs(status: str, reason: str | None) -> None:
    """End what is still open; a no-op when MLflow was never imported (e.g. `rethink --help`). A signal that
    comes meanwhile is dropped once the write it came in is done: the process is ending already."""
    with signals.shielded(raise_held=False):
        _close(status, reason)


def _close(status: str, reason: str | None) -> None:
    tracking = sys.modules.get("study.records.tracking")
    if tracking is not None:
        tracking.close_open_runs(status, reason)
    mlflow = sys.modules.get("mlflow")
    for _ in range(8):  # fluent runs of `rethink train` / `prune` (nested at most a few deep)
        if mlflow is None or mlflow.active_run() is None:
            break
        try:
            if reason:
                mlflow.set_tag("failure_reason" if status != "FINISHED" else "note", reason[:5000])
            mlflow.end_run(status)
        except Exception:  # noqa: BLE001 - a server gone: nothing more to do here; the run stays as it is
            break


def _is_outage(e: BaseException) -> bool:
    tracking = sys.modules.get("study.records.tracking")
    return tracking is not None and tracking.is_tracking_outage(e)


def ending(e: BaseException) -> tuple[str, str]:
    """The status and reason a run ends with when `e` stops it: KILLED for a signal, FAILED otherwise."""
    if isinstance(e, Terminated):
        return "KILLED", "terminated (SIGTERM); run the same command again to resume"
    if isinstance(e, KeyboardInterrupt):
        return "KILLED", "interrupted (SIGINT); run the same command again to resume"
    return "FAILED", f"{type(e).__name__}: {one_line(e)}"


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def run_guarded(command: str, call: Callable[[], int], user_errors: tuple[type[BaseException], ...]) -> int:
    """Run `call` (a command) and turn how it ended into run statuses and an exit code. SIGINT and SIGTERM
    are held while a tracking record is written (signals.py)."""
    previous = signals.install()
    try:
        return _run(command, call, user_errors)
    finally:
        signals.restore(previous)
        if (ownership := sys.modules.get("study.records.ownership")) is not None:
            ownership.release_all()  # in-process callers (tests, notebooks) get the spec back at once
        if (team := sys.modules.get("rethink.team")) is not None:
            team.close_team()  # --gpus-per-trial's follower processes end with the command


def _run(command: str, call: Callable[[], int], user_errors: tuple[type[BaseException], ...]) -> int:
    try:
        code = call()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as Terminated
        status, reason = ending(e)
        _close_runs(status, reason)
        print(f"rethink {command}: {reason.replace('the same command', 'it')}", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(e, Terminated) else EXIT_SIGINT
    except user_errors as e:
        _close_runs("FAILED", one_line(e))
        print(f"rethink {command}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER
    except Exception as e:
        if _is_outage(e):  # the server is gone: ending runs would only wait on it; the next run reconciles
            print(f"rethink {command}: error: {_outage_message(e)}", file=sys.stderr)
            return EXIT_SERVICE
        _close_runs(*ending(e))
        raise
    _close_runs("FINISHED", None)
    return code


def _outage_message(e: BaseException) -> str:
    tracking = sys.modules["study.records.tracking"]
    if isinstance(e, tracking.TrackingUnavailable):
        return one_line(e)
    import mlflow

    return (
        f"the MLflow tracking server {redact(mlflow.get_tracking_uri())} stopped answering; the trial it was "
        f"recording is failed in Optuna and will run again: run the same command when the server is back"
    )
