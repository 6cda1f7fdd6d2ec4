"""A Ctrl-C or SIGTERM that lands inside a tracking write is held until the write and its bookkeeping are
done (study/records/signals.py): the run it made is known, so the process ends it KILLED, never RUNNING."""

import os
import signal
import time

import mlflow
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from study.records import signals
from study.records.lifecycle import EXIT_SIGINT, EXIT_SIGTERM, run_guarded
from study.records.tracking import RunTree


@pytest.mark.parametrize(
    "signum,code,reason",
    [(signal.SIGINT, EXIT_SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, EXIT_SIGTERM, "terminated (SIGTERM)")],
)
def test_a_signal_right_after_a_run_is_committed_still_ends_that_run(tracking_uri, signum, code, reason):
    armed, inserted = [], []

    def note_run_insert(session, context, instances):
        if armed and any(type(o).__name__ == "SqlRun" for o in session.new):
            inserted.append(True)

    def signal_after_commit(session):  # the store holds the run now; MLflow has not returned its id yet
        if armed and inserted:
            armed.clear()
            os.kill(os.getpid(), signum)  # the handler runs at the main thread's next bytecode: inside MLflow

    def command() -> int:
        tree = RunTree("shield")
        root = tree.root("spec", {"rethink.digest": "d"})
        armed.append(True)
        tree.child(root, "trial", "trial", {"n": 0}, reuse=False)  # the signal is raised as this returns
        time.sleep(5)
        return 0

    event.listen(Session, "before_flush", note_run_insert)
    event.listen(Session, "after_commit", signal_after_commit)
    try:
        started = time.monotonic()
        assert run_guarded("study", command, ()) == code
    finally:
        event.remove(Session, "after_commit", signal_after_commit)
        event.remove(Session, "before_flush", note_run_insert)
    assert inserted and not armed  # the signal came after the trial's run was committed
    assert time.monotonic() - started < 5  # raised once the write was done, not after the sleep
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("shield")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert {name: r.info.status for name, r in runs.items()} == {"spec": "KILLED", "trial": "KILLED"}
    assert reason in runs["trial"].data.tags["failure_reason"]


def test_a_held_signal_is_raised_when_the_write_ends_and_a_second_one_at_once():
    previous = signals.install()
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt), signals.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            reached.append("after the first")  # held
        with pytest.raises(KeyboardInterrupt), signals.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)  # a write that hangs can still be stopped
            time.sleep(0.2)
            reached.append("after the second")
        with signals.shielded(raise_held=False):  # closing runs: the process is ending already
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        with pytest.raises(signals.Terminated):  # nothing held is left over from the dropped one
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
    finally:
        signals.restore(previous)
    assert reached == ["after the first"]
