"""What a process that could not close its work left behind (SIGKILL, a tracking server gone), made
consistent by the next run of the spec: Optuna and MLflow agree trial by trial, no run stays RUNNING,
and every trial that was lost (not failed through its own config) runs again."""

from __future__ import annotations

import os

import optuna
from optuna.trial import TrialState

from study.records.ownership import owner_alive
from study.records.storage import retry_trial
from study.records.tracking import _OPEN, RunTree, trial_run_id

from .studies import DONE, settled

# The MLflow status a trial's run ends with, by the trial's Optuna state (objective.py writes the same).
RUN_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def recover_interrupted(study: optuna.Study, tree: RunTree, pid: int | None = None, owner: str = "worker") -> int:
    """Trials left RUNNING by an owner that is provably dead (with `pid`: that worker's): mark them
    failed and lost, end their MLflow runs as KILLED, and enqueue the same parameters again. The owner is
    the worker that ran the trial, or with owner="driver" the Ray driver that asked it (its tasks die with it)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_pid = t.user_attrs.get(f"{owner}_pid")
        if owner != "worker" and owner_pid is None:
            continue  # not a trial of that kind of owner
        if pid is not None and owner_pid != pid:
            continue
        if pid is None and owner_alive(owner_pid, t.user_attrs.get(f"{owner}_host")):
            continue  # e.g. a live worker of an earlier `--workers N` run: it finishes its own trial
        # Marked lost and its retry enqueued before it is failed: a worker asking for a trial meanwhile takes
        # the retry (Optuna hands out waiting trials first), and the budget check no longer counts the lost one,
        # so a freshly sampled trial cannot take the retry's place in the budget.
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "interrupted; retried")
        study._storage.set_trial_user_attr(t._trial_id, "lost", True)
        n += retry_trial(study, t)
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        if run_id := trial_run_id(tree.client, study.study_name, t, [tree.experiment_id]):
            tree.end(run_id, "KILLED", "the process running this trial was interrupted; the trial was retried")
    return n


def close_stale_trial_runs(study: optuna.Study, tree: RunTree) -> int:
    """MLflow trial runs still RUNNING whose Optuna trial has ended: end them as the trial ended."""
    runs = tree.client.search_runs(
        [tree.experiment_id],
        f"tags.`rethink.kind` = 'trial' and tags.`optuna.study_name` = '{study.study_name}' "
        "and attributes.status = 'RUNNING'",
    )
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    n = 0
    for run in runs:
        t = trials.get(int(run.data.tags.get("optuna.trial_number", -1)))
        if t is None or t.state in (TrialState.RUNNING, TrialState.WAITING) or run.info.run_id in _OPEN:
            continue
        status = "KILLED" if t.user_attrs.get("lost") else RUN_STATUS[t.state]
        reason = t.user_attrs.get("fail_reason") or f"the trial ended {t.state.name} in Optuna"
        tree.end(run.info.run_id, status, f"closed on a later run of the spec: {reason}")
        n += 1
    return n


def close_stale_runs(tree: RunTree, root: str) -> int:
    """Runs under `root` still RUNNING that no live process owns (call only while owning the spec):
    base, prune, arm, final or report runs of a process that was killed. Trial runs are left to
    `close_stale_trial_runs`, which knows how each trial ended."""
    project_run = os.environ.get("MLFLOW_RUN_ID")
    running = tree.client.search_runs([tree.experiment_id], "attributes.status = 'RUNNING'")
    parents = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in running}
    n = 0
    for run in running:
        run_id = run.info.run_id
        if run_id in _OPEN or run_id == project_run or run.data.tags.get("rethink.kind") == "trial":
            continue
        parent = parents.get(run_id)
        while parent is not None and parent != root and parent in parents:
            parent = parents[parent]
        if parent != root and run_id != root:
            continue
        tree.end(run_id, "KILLED", "left RUNNING by a process that was killed; closed on a later run of the spec")
        n += 1
    return n


def requeue_lost(study: optuna.Study) -> int:
    """Trials that ended without a result through no fault of their config (interrupted, a tracking
    server gone) and have no retry queued: enqueue them again, so every budget is met with the same
    trials. Baselines are never dropped: one that failed any way but diverging runs again."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retried_from") for t in trials}
    alive = (*DONE, TrialState.RUNNING, TrialState.WAITING)
    kept = {t.user_attrs.get("baseline") for t in trials if t.state in alive or settled(t)}
    n = 0
    for t in trials:
        if t.state != TrialState.FAIL or t.number in retried:
            continue
        baseline = t.user_attrs.get("baseline")
        if baseline:
            if baseline not in kept and retry_trial(study, t):
                kept.add(baseline)
                n += 1
        elif t.user_attrs.get("lost") and retry_trial(study, t):
            n += 1
    return n
