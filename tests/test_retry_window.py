"""A dead worker's trial and its retry under heartbeats: Optuna fails the stale trial first and enqueues the
retry in a callback after, so for a moment the trial is neither running nor retried. A worker counting the
budget in that moment must wait for the retry, not sample a fresh trial in its place (which filled the budget
and left the retry WAITING for good in the Postgres kill test, once)."""

from __future__ import annotations

import time

import optuna
from optuna.storages import RDBStorage

from study.records.storage import MAX_RETRIES, retry_trial
from study.search.studies import RETRY_WAIT_S, next_move, retries_due


def heartbeat_study(tmp_path, callback) -> optuna.Study:
    storage = RDBStorage(
        f"sqlite:///{tmp_path / 'optuna.db'}",
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=callback,
    )
    return optuna.create_study(storage=storage, study_name="s")


def finished(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        t = study.ask()
        study.tell(t, t.suggest_float("x", 0, 1))


def stale_trial(study: optuna.Study) -> optuna.Trial:
    """A trial RUNNING whose worker beat once and then died."""
    t = study.ask()
    t.suggest_float("x", 0, 1)
    study._storage.record_heartbeat(t._trial_id)
    time.sleep(2.2)  # past the grace period
    return t


def test_a_worker_waits_for_a_dead_workers_retry_instead_of_sampling_in_its_place(tmp_path):
    moves_in_window = []

    def callback(study, trial):  # Optuna calls it after it set the trial FAIL: the window
        moves_in_window.append(next_move(study, 2, {}))
        retry_trial(study, trial)

    study = heartbeat_study(tmp_path, callback)
    finished(study, 1)
    lost = stale_trial(study)
    assert next_move(study, 2, {}) == "wait"  # it still runs, as far as anyone knows
    optuna.storages.fail_stale_trials(study)
    # one finished, none running: without the due retry counted, a worker would sample a fresh trial here
    assert moves_in_window == ["wait"]
    assert next_move(study, 2, {}) == "run"  # the retry is enqueued: the next trial asked for is the retry
    retry = study.ask()
    assert retry.user_attrs["retried_from"] == lost.number
    assert retry.suggest_float("x", 0, 1) == lost.params["x"]  # the same configuration again


def test_a_due_retry_is_waited_for_only_so_long_and_only_where_one_comes(tmp_path):
    study = heartbeat_study(tmp_path, None)  # no callback: the process that failed it died before the retry
    finished(study, 1)
    stale_trial(study)
    optuna.storages.fail_stale_trials(study)
    assert next_move(study, 2, {}) == "wait"
    seen: dict[int, float] = {}
    assert retries_due(study.get_trials(), seen, now=100.0) == 1
    assert retries_due(study.get_trials(), seen, now=100.0 + RETRY_WAIT_S - 1) == 1
    assert retries_due(study.get_trials(), seen, now=100.0 + RETRY_WAIT_S) == 0  # then the worker samples afresh
    # a failure a live process saw records its reason (diverged, interrupted, over budget): no retry is due
    t = study.ask()
    t.set_user_attr("fail_reason", "NonFiniteLoss: loss nan at epoch 1")
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    # a trial already retried MAX_RETRIES times gets no more
    t = study.ask()
    t.set_user_attr("retry_count", MAX_RETRIES)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    assert retries_due(study.get_trials(), {}, now=0.0) == 1  # only the heartbeat-failed one, seen afresh
    assert next_move(study, 2, {}) == "wait"
    assert next_move(study, 1, {}) == "done"
    assert next_move(study, 3, {}) == "run"
