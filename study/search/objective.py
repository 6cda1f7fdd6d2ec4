"""One trial: build the arm, apply the trial's hyperparameters, train, report, return the objectives. The
steps (`TrialSteps`) serve the one-at-a-time objective and the trials trained as a group alike."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field, replace

import optuna

from rethink.arms import Arm
from rethink.flops import training_flops
from rethink.resume import EpochCheckpoint, prior_epochs
from rethink.train import Callback, EpochMetrics, History, NonFiniteLoss, Runtime, StopTraining, TrainConfig, train
from study.plan.layout import arm_of
from study.plan.space import apply, suggest
from study.records.lifecycle import ending
from study.records.progress import PrintProgress
from study.records.snapshots import read_snapshot, snapshot_seconds, write_snapshot
from study.records.tracking import MlflowEpochLogger, RunTree, is_tracking_outage

from .studies import PROGRESS_STEPS
from .trunk import Trunk


class ReportToOptuna(Callback):
    """Per-epoch validation accuracy to the hpo pruner, which may stop the trial: at the epoch (fixed-budget
    mode: every trial the same length), or with `epochs` at the percent of the trial's own schedule (a
    proxy's capped search, whose trials differ in length)."""

    def __init__(self, trial: optuna.Trial, epochs: int | None = None):
        self.trial, self.epochs = trial, epochs
        self.pruned_at: int | None = None

    def on_epoch_end(self, metrics: EpochMetrics, model) -> None:
        step = metrics.epoch if self.epochs is None else round(PROGRESS_STEPS * (metrics.epoch + 1) / self.epochs)
        self.trial.report(metrics.eval_acc, step)
        if self.epochs is not None and metrics.epoch + 1 >= self.epochs:
            return  # trained to its end: stopping it now would save nothing and lose a finished trial
        if self.trial.should_prune():
            self.pruned_at = metrics.epoch
            raise StopTraining


class OverBudget(RuntimeError):
    """A parallel worker's trial beyond the arm's budget; it is failed at once, untrained and unrecorded."""


def over_budget(trial: optuna.Trial, n_searched: int) -> bool:
    """Whether this trial would break its kind's budget under parallel workers, judged by the finished and
    running trials with lower numbers: a searched trial when they already hold n_searched searched ones; a
    baseline when the same baseline already finished or runs. The budget is per kind, so a dead worker's
    baseline, failed and enqueued again, is never displaced by one more searched trial."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    ahead = [
        t
        for t in trial.study.get_trials(deepcopy=False, states=states)
        if t.number < trial.number and not t.user_attrs.get("lost")  # a lost trial's retry takes its place
    ]
    if name := trial.user_attrs.get("baseline"):
        return any(t.user_attrs.get("baseline") == name for t in ahead)
    return sum(not t.user_attrs.get("baseline") for t in ahead) >= n_searched


@dataclass
class ArmContext:
    """Everything a trial of one arm needs; built once per arm and worker."""

    arm: str  # the study's key: finetune@E, scratch-b@P (capped), scratch (pareto: Scratch-E and B), lottery, ...
    trunk: Trunk
    recipe: TrainConfig  # the arm's paper recipe
    study_name: str
    arm_run: str
    tree: RunTree
    mode: str
    runtime: Runtime
    n_trials: int  # the study's whole budget: searched trials plus its baselines
    epochs: tuple[int, int, bool] | int = 1  # the searched (low, high, log) range, or fixed-budget's epochs
    parallel: bool = False  # other processes may run this study's trials: budget checks and worker pids
    # per trial: (train seconds, per-epoch tracking seconds inside them[, trial wall seconds])
    timings: list[tuple] = field(default_factory=list)


@dataclass(eq=False)
class TrialPlan:
    """A trial made ready to train: its parameters, recipe, arm and callbacks; its run is made as it starts."""

    trial: optuna.Trial
    params: dict
    config: TrainConfig
    tags: dict[str, str]
    label: str
    arm: Arm
    logger: MlflowEpochLogger
    reporter: ReportToOptuna | None
    callbacks: list[Callback]
    run_id: str = ""
    resume: dict | None = None  # the snapshot of the lost trial this retry continues


class TrialSteps:
    """The steps of one trial of an arm: plan, start (its MLflow run), then finish or fail."""

    def __init__(self, ctx: ArmContext):
        self.ctx = ctx
        spec = ctx.trunk.spec
        self.common_tags = {
            "arm": ctx.arm,
            "optuna.study_name": ctx.study_name,
            "rethink.spec_digest": spec.digest(),
            "rethink.spec": spec.name,
            "method": spec.prune.method,
            "ratio": spec.prune.ratio if spec.prune.ratio is not None else spec.prune.variant,
            "rethink.runtime": ctx.runtime.describe(),
        }

    def plan(self, trial: optuna.Trial) -> TrialPlan:
        ctx, spec = self.ctx, self.ctx.trunk.spec
        if ctx.parallel and over_budget(trial, spec.study.n_trials):
            trial.set_user_attr("fail_reason", "over budget: other workers already run the last trials")
            raise OverBudget(trial.number)
        trial.set_user_attr("worker_pid", os.getpid())  # the owner: only a dead owner's trial is recovered
        trial.set_user_attr("worker_host", socket.gethostname())
        params = suggest(trial, spec.space, ctx.epochs)
        config = proxy_config(apply(params, ctx.recipe), spec)
        baseline = trial.user_attrs.get("baseline", "")
        tags = {**self.common_tags, "optuna.trial_number": trial.number, "rethink.trial_kind": "searched"}
        if baseline:
            tags |= {
                "baseline": baseline,
                "baseline_source": trial.user_attrs.get("baseline_source", ""),
                "rethink.trial_kind": "baseline",
            }
        label = f"trial {trial.number}" + (f" (baseline: {baseline})" if baseline else "")
        arm = ctx.trunk.build(arm_of(ctx.arm), spec.seed)
        logger = MlflowEpochLogger("", "val", flush_at_end=False)  # the rest goes with the final figures
        reporter = None
        if ctx.mode == "fixed-budget":
            reporter = ReportToOptuna(trial)
        elif spec.proxy is not None and spec.study.hpo_pruner != "none":
            reporter = ReportToOptuna(trial, config.epochs)
        callbacks = [*arm.callbacks, logger, PrintProgress(config.epochs, f"[{ctx.arm}] ", every=5)]
        if reporter:
            callbacks.append(reporter)
        p = TrialPlan(trial, params, config, tags, label, arm, logger, reporter, callbacks)
        p.resume = self._lost_snapshot(trial, config)
        if p.resume is not None:
            tags |= {"rethink.resumed_from": p.resume["run_id"], "rethink.resumed_after_epoch": p.resume["epoch"] + 1}
            p.label += f" (resumed after epoch {p.resume['epoch'] + 1})"
        prior, seen = prior_epochs(p.resume)
        write = lambda state: write_snapshot(ctx.tree.client, p.run_id, state)  # noqa: E731 - p.run_id comes at start
        p.callbacks.append(EpochCheckpoint(write, config.digest(), snapshot_seconds(), prior, seen))
        return p

    def _lost_snapshot(self, trial: optuna.Trial, config: TrainConfig) -> dict | None:
        """The last snapshot of the lost trial this one retries (same parameters, so the same recipe)."""
        lost = trial.user_attrs.get("retried_from")
        if lost is None:
            return None
        run_id = trial.study.get_trials(deepcopy=False)[lost].user_attrs.get("mlflow_run_id")
        state = read_snapshot(self.ctx.tree.client, run_id, config.digest())
        return None if state is None else state | {"run_id": run_id}

    def start(self, p: TrialPlan) -> None:
        """The trial's MLflow run, made and pointed at from the trial, with its parameters."""
        ctx, config = self.ctx, p.config
        p.run_id = p.logger.run_id = ctx.tree.child(ctx.arm_run, p.label, "trial", p.tags, reuse=False)
        p.trial.set_user_attr("mlflow_run_id", p.run_id)
        ctx.tree.log_params(
            p.run_id, {**p.params, **{f"train.{k}": v for k, v in config.to_dict().items()}}, fresh=True
        )
        print(
            f"[{ctx.arm}] {p.label}: lr {config.lr:.4g} {config.schedule}, augment {config.augment}, "
            f"{config.epochs} epochs",
            flush=True,
        )

    def failed(self, p: TrialPlan, e: BaseException) -> None:
        """End the run of a trial that `e` stopped: FAILED for good when it diverged, else as `e` says."""
        if isinstance(e, NonFiniteLoss):
            p.trial.set_user_attr("fail_reason", str(e))
            p.trial.set_user_attr("failed_for_good", True)  # a diverged config: retrying it changes nothing
            p.logger.flush()
            self.ctx.tree.end(p.run_id, "FAILED", str(e))
        elif not is_tracking_outage(e):  # SIGINT/SIGTERM, OOM, bugs
            with contextlib.suppress(Exception):  # keep the original error
                p.logger.flush()
            self.ctx.tree.end_quietly(p.run_id, *ending(e))

    def finish(self, p: TrialPlan, history: History, train_seconds: float):
        """Record a trained trial (FINISHED, or KILLED when the hpo pruner stopped it) and return its objectives."""
        ctx, trial, arm = self.ctx, p.trial, p.arm
        flops = training_flops(arm.forward_macs, history.images_seen)
        pipeline = flops + (ctx.trunk.budgets.inherited if arm.inherits_base else 0.0)
        final = history.final
        summary = {
            "val_acc": final.eval_acc,
            "best_val_acc": history.best_eval_acc,
            "train_flops": flops,
            "pipeline_flops": pipeline,
            "epochs_run": len(history.epochs),
            "train_seconds": train_seconds,
        }
        trial.set_user_attr("train_flops", flops)  # also objective 2 in pareto mode
        trial.set_user_attr("pipeline_flops", pipeline)
        if p.reporter and p.reporter.pruned_at is not None:
            reason = f"hpo_pruner stopped the trial after epoch {p.reporter.pruned_at}"
            ctx.tree.finish(
                p.run_id,
                "KILLED",
                summary,
                {"optuna.state": "PRUNED", "failure_reason": reason},
                step=len(history.epochs),
                pending=p.logger.take(),
            )
            raise optuna.TrialPruned(reason)
        ctx.tree.finish(
            p.run_id,
            "FINISHED",
            summary,
            {"optuna.state": "COMPLETE"},
            step=len(history.epochs),
            pending=p.logger.take(),
        )
        return (final.eval_acc, flops) if ctx.mode == "pareto" else final.eval_acc


def proxy_config(config: TrainConfig, spec) -> TrainConfig:
    """A searched trial's recipe on the spec's proxy: its share of the epochs (its parameters stay the
    full-scale ones that confirmation trains)."""
    if spec.proxy is None or spec.proxy.epochs == 1:
        return config
    return replace(config, epochs=max(1, round(config.epochs * spec.proxy.epochs)))


def mark_lost(trial: optuna.Trial, e: BaseException) -> None:
    """A trial stopped by a signal or a tracking outage is not its config's fault: it is marked lost, and
    the same trial runs again on the next run of the spec (reconcile.requeue_lost)."""
    if isinstance(e, KeyboardInterrupt) or is_tracking_outage(e):
        trial.set_user_attr("lost", True)
    trial.set_user_attr("fail_reason", f"{type(e).__name__}: {str(e)[:500]}")


def make_objective(ctx: ArmContext):
    steps = TrialSteps(ctx)

    def objective(trial: optuna.Trial):
        plan = steps.plan(trial)
        steps.start(plan)
        start = time.perf_counter()
        try:
            history = train(
                plan.arm.model, ctx.trunk.search_split, plan.config, plan.callbacks, ctx.runtime, resume=plan.resume
            )
        except BaseException as e:
            steps.failed(plan, e)
            raise
        train_seconds = time.perf_counter() - start
        ctx.timings.append((train_seconds, plan.logger.seconds))
        return steps.finish(plan, history, train_seconds)

    def guarded(trial: optuna.Trial):
        try:
            return objective(trial)
        except (NonFiniteLoss, OverBudget, optuna.TrialPruned):
            raise
        except BaseException as e:
            mark_lost(trial, e)
            raise

    return guarded


def outcome(t: optuna.trial.FrozenTrial) -> str:
    """A trial's score as its progress line shows it."""
    if t.state == optuna.trial.TrialState.COMPLETE:
        flops = t.user_attrs.get("train_flops")
        return f"trial {t.number}: val acc {t.values[0]:.4f}" + (f", {flops:.3g} training MACs" if flops else "")
    reason = t.user_attrs.get("fail_reason", "")
    return f"trial {t.number}: {t.state.name.lower()}" + (f" ({reason[:120]})" if reason else "")
