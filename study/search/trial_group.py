"""A study's waiting trials (its enqueued baselines, and trials enqueued again after they were lost) trained
as one group (rethink.fuse), where that keeps Optuna's sampler and the budget exact.

Their parameters are fixed before they run, so training them together changes no parameter; and the
searched trials asked after them see the same finished trials as when they trained one by one (checked
with Optuna 5's TPE, single- and multi-objective: the same suggestions follow). An hpo pruner would
compare a trial's intermediate values with trials still running beside it, which one by one it would
not: with one (fixed-budget mode), or when other processes share the study, trials train one at a time."""

from __future__ import annotations

import sys
import time
import warnings

import optuna
from optuna.trial import TrialState

from rethink.fuse import fusion_plan, train_group
from rethink.train import History, Job

from .objective import ArmContext, TrialPlan, TrialSteps, mark_lost, outcome
from .studies import trial_counts


def fusable(study: optuna.Study, ctx: ArmContext) -> int:
    """How many of the study's waiting trials can train now as one group (0: train one at a time)."""
    if ctx.parallel or not isinstance(study.pruner, optuna.pruners.NopPruner):
        return 0
    done, running, _ = trial_counts(study)
    waiting_trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if any("retried_from" in t.user_attrs for t in waiting_trials):
        return 0  # a lost trial's retry may resume from its snapshot: one run at a time
    waiting = len(waiting_trials)
    n = min(waiting, ctx.n_trials - done - running)  # never more than the budget has room for
    return n if n >= 2 and ctx.runtime.fusion(n) != "off" else 0


def run_waiting_together(study: optuna.Study, ctx: ArmContext) -> bool:
    """Train the study's waiting trials as one group, when `fusable`; whether it did."""
    n = fusable(study, ctx)
    if not n:
        return False
    wall = time.perf_counter()
    steps = TrialSteps(ctx)
    with warnings.catch_warnings():  # heartbeats serve workers that share a study; this study has one process
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        trials = [study.ask() for _ in range(n)]  # each takes the next waiting trial, its parameters fixed
    plans: list[TrialPlan] = []
    try:
        plans = [steps.plan(t) for t in trials]
    except BaseException as e:
        _abandon(study, trials, plans, set(), {}, steps, e)
        raise
    jobs = [Job(p.arm.model, p.config, p.callbacks) for p in plans]
    for p, how in zip(plans, fusion_plan(jobs, ctx.runtime), strict=True):
        p.tags["rethink.runtime"] = ctx.runtime.describe(how)
    started: dict[int, float] = {}
    told: set[int] = set()

    def on_start(k: int) -> None:
        steps.start(plans[k])
        started[k] = time.perf_counter()

    def on_done(k: int, result: History | BaseException) -> None:
        trial = trials[k]
        if isinstance(result, BaseException):  # it diverged
            steps.failed(plans[k], result)
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, steps.finish(plans[k], result, time.perf_counter() - started[k]))
        told.add(k)
        done, _, _ = trial_counts(study)
        frozen = study.get_trials(deepcopy=False)[trial.number]
        print(f"[{ctx.arm}] {outcome(frozen)}; {done}/{ctx.n_trials} trials finished", flush=True)

    train_start = time.perf_counter()
    try:
        train_group(jobs, ctx.trunk.search_split, ctx.runtime, on_done=on_done, on_start=on_start)
    except BaseException as e:
        _abandon(study, trials, plans, told, started, steps, e)
        raise
    train_seconds = time.perf_counter() - train_start
    ctx.timings.append((train_seconds, sum(p.logger.seconds for p in plans), time.perf_counter() - wall))
    return True


def _abandon(study, trials, plans, told, started, steps, e: BaseException) -> None:
    """What stopped the group (a signal, a tracking server gone, a bug) fails every trial not yet told,
    as the one-at-a-time objective fails its trial: its run ended, and marked lost to run again."""
    for k, trial in enumerate(trials):
        if k in told:
            continue
        if k in started:
            steps.failed(plans[k], e)
        mark_lost(trial, e)
        try:
            study.tell(trial, state=TrialState.FAIL)
        except Exception as err:  # noqa: BLE001 - the storage gone too: the next run reconciles
            print(f"could not fail trial {trial.number}: {err}", file=sys.stderr)
