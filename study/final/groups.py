"""Final runs trained as one group (the per-seed bases; the picks × seeds): each is its own MLflow run, made
as its training starts and ended as soon as it ends, with its own per-epoch metrics and test score."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from rethink.flops import training_flops
from rethink.fuse import fusion_plan, train_group
from rethink.resume import EpochCheckpoint, prior_epochs
from rethink.splits import Split
from rethink.train import Callback, History, Job, Runtime, TrainConfig, train_jobs
from study.records.lifecycle import ending
from study.records.progress import PrintProgress
from study.records.snapshots import read_snapshot, snapshot_seconds, write_snapshot
from study.records.tracking import MlflowEpochLogger, RunTree, is_tracking_outage


@dataclass(frozen=True)
class Score:
    """What a finished run logs: its accuracy under `metric`, its training MACs (3 × forward MACs × images)
    and, with `inherited` (the base training a run builds on), its pipeline MACs. Small and plain, so that a
    Ray task scores its runs as this process would."""

    macs: tuple[float, ...]  # forward MACs of run k
    inherited: tuple[float, ...] | None = None  # None: no pipeline_flops
    metric: str = "test_acc"

    def __call__(self, k: int, history: History) -> dict[str, float]:
        flops = training_flops(self.macs[k], history.images_seen)
        out = {self.metric: history.final.eval_acc, "train_flops": flops}
        if self.inherited is not None:
            out["pipeline_flops"] = flops + self.inherited[k]
        return out

    def subset(self, ks: Sequence[int]) -> Score:
        inherited = None if self.inherited is None else tuple(self.inherited[k] for k in ks)
        return Score(tuple(self.macs[k] for k in ks), inherited, self.metric)


@dataclass(eq=False)
class Pending:
    """One final run still to train: its MLflow run's name, tags and params, and what it trains."""

    name: str
    tags: dict
    params: dict
    model: nn.Module
    config: TrainConfig
    label: str  # its line in the progress output, e.g. "seed 1"
    callbacks: list[Callback] = field(default_factory=list)
    parent: str = ""  # its MLflow parent run (default: the group's `root`)


def train_pending(
    pending: Sequence[Pending],
    split: Split,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    finish: Callable[[int, History], dict[str, float]],
    heading: str,
    kind: str = "final",
    raise_failures: bool = True,
) -> tuple[list[str], list[History | BaseException]]:
    """Train the pending runs as one group (how: runtime.fuse). Each one's MLflow run (of `kind`) is made as
    its training starts and ended as it ends: FINISHED with the metrics `finish(k, history)` returns (it may
    save checkpoints first), or with the status and reason of what stopped it. Whatever stops the group ends
    the runs still open, and is raised; so is a run's own failure (a diverged loss), once the others have
    ended, unless `raise_failures` is off (then it is returned in its place)."""
    if not pending:
        return [], []
    resumes = [killed_snapshot(tree, p, p.parent or root, kind) for p in pending]
    jobs = [Job(p.model, p.config) for p in pending]
    plan = fusion_plan(jobs, runtime)
    scored_on = "test" if kind == "final" else "val"  # confirmation runs are scored on the validation split
    loggers = [MlflowEpochLogger("", scored_on) for _ in pending]  # each gets its run id when its run is made
    run_ids = [""] * len(pending)
    for k, (job, p, logger) in enumerate(zip(jobs, pending, loggers, strict=True)):
        label = f"  {p.label}: " if len(pending) > 1 else "  "
        prior, seen = prior_epochs(resumes[k])
        write = lambda state, k=k: write_snapshot(tree.client, run_ids[k], state)  # noqa: E731
        snapshots = EpochCheckpoint(write, p.config.digest(), snapshot_seconds(), prior, seen)
        job.callbacks = [*p.callbacks, logger, PrintProgress(p.config.epochs, label, every=10), snapshots]
    epochs = sorted({p.config.epochs for p in pending})
    span = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
    how = f", {len(pending)} runs {plan[0][0] if plan[0][0] != 'off' else 'unfused'}" if len(pending) > 1 else ""
    print(f"{heading}: {span} epochs{how}", file=sys.stderr, flush=True)
    still_open: set[int] = set()

    def on_start(k: int) -> None:
        p = pending[k]
        tags = p.tags | {"rethink.runtime": runtime.describe(plan[k])}
        if (r := resumes[k]) is not None:
            tags |= {"rethink.resumed_from": r["run_id"], "rethink.resumed_after_epoch": str(r["epoch"] + 1)}
        run_ids[k] = loggers[k].run_id = tree.child(p.parent or root, p.name, kind, tags, reuse=False)
        still_open.add(k)
        tree.log_params(run_ids[k], p.params, fresh=True)

    def on_done(k: int, outcome: History | BaseException) -> None:
        still_open.discard(k)
        if isinstance(outcome, BaseException):
            tree.end_quietly(run_ids[k], *ending(outcome))
            return
        tree.log_metrics(run_ids[k], finish(k, outcome), pending[k].config.epochs)
        tree.end(run_ids[k])
        who = f"{pending[k].label} " if len(pending) > 1 else ""
        print(f"  {who}{scored_on} acc {outcome.final.eval_acc:.4f}", file=sys.stderr, flush=True)

    fresh = [k for k in range(len(jobs)) if resumes[k] is None]
    outcomes: list[History | BaseException] = [None] * len(jobs)  # type: ignore[list-item]
    try:
        for k in (k for k in range(len(jobs)) if resumes[k] is not None):  # alone, from the epoch after it
            print(f"  {pending[k].label}: resumed after epoch {resumes[k]['epoch'] + 1}", file=sys.stderr, flush=True)
            on_start(k)
            (outcomes[k],) = train_jobs([jobs[k]], split, runtime, True, on_done=lambda _, o, k=k: on_done(k, o),
                                        resume=resumes[k])  # fmt: skip
        together = train_group(
            [jobs[k] for k in fresh], split, runtime, eval_final_only=True,
            on_done=lambda i, o: on_done(fresh[i], o), on_start=lambda i: on_start(fresh[i]),
        ) if fresh else []  # fmt: skip
        for i, o in zip(fresh, together, strict=True):
            outcomes[i] = o
    except BaseException as e:
        if not is_tracking_outage(e):  # a server gone: ending runs would only wait on it; the next run reconciles
            for k in sorted(still_open):
                tree.end_quietly(run_ids[k], *ending(e))
        raise
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and raise_failures:
            raise outcome
    return run_ids, outcomes


def killed_snapshot(tree: RunTree, p: Pending, parent: str, kind: str) -> dict | None:
    """The snapshot of this run's latest KILLED attempt (same kind, tags and parent; same recipe), if any."""
    tags = {"rethink.kind": kind, **{k: str(v) for k, v in p.tags.items()}}
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    clauses += [f"tags.`mlflow.parentRunId` = '{parent}'", f"attributes.run_name = '{p.name}'"]
    clauses.append("attributes.status = 'KILLED'")
    runs = tree.client.search_runs(
        [tree.experiment_id], " and ".join(clauses), max_results=1, order_by=["attributes.start_time DESC"]
    )
    if not runs:
        return None
    state = read_snapshot(tree.client, runs[0].info.run_id, p.config.digest())
    return None if state is None else state | {"run_id": runs[0].info.run_id}
