"""One spec end to end: trunk (base → prune) → one Optuna study per arm, each to its trial budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

from rethink.arms import default_recipe
from rethink.train import NonFiniteLoss, Runtime
from study.plan.arch import check_model_fits, search_trains_base
from study.plan.layout import arm_of, check_reach, epoch_range, rows_of, study_arms
from study.plan.spec import Spec, SpecError
from study.records.cluster import Cluster
from study.records.ownership import claim
from study.records.secrets import redact
from study.records.storage import DEFAULT_STORAGE, allows_parallel, is_shared, make_storage
from study.records.tracking import RunTree, configure

from .chance import check_base_learned
from .objective import ArmContext, OverBudget, make_objective, outcome
from .reconcile import close_stale_runs, close_stale_trial_runs, recover_interrupted, requeue_lost
from .remote import run_trials_on_cluster
from .studies import (
    enqueue_baselines,
    next_move,
    open_study,
    resolve_study_names,
    searched_done,
    trial_counts,
)
from .trial_group import run_waiting_together
from .trunk import Trunk, build_trunk, load_data


@dataclass(frozen=True)
class RunOptions:
    storage: str = DEFAULT_STORAGE
    tracking_uri: str | None = None
    workdir: Path = Path("runs")
    runtime: Runtime = Runtime()
    workers: int = 1
    new_study: bool = False
    worker: bool = False  # a subprocess joining studies its parent prepared
    worker_cmd: tuple[str, ...] = ()  # the command a worker runs (with --worker), for --workers N
    prepare_only: bool = False  # make the trunk, the studies and their baselines, run no trial
    cluster: Cluster | None = None  # --engine ray: trials (and final runs) as Ray tasks on this session
    allow_chance_base: bool = False  # go on when the base is not clearly above chance (the report says so)


@dataclass
class ArmResult:
    arm: str
    study_name: str
    arm_run: str
    n_done: int  # searched trials finished
    best_val_acc: float
    best_params: dict
    overhead_fraction: float | None
    n_baselines: int = 0


@dataclass
class SpecResult:
    spec: Spec
    root_run: str
    trunk: Trunk
    arms: list[ArmResult] = field(default_factory=list)
    storage: str = ""
    tracking_uri: str = ""
    complete: bool = False  # every study met its budget (searched trials and baselines)


def run_trials(study: optuna.Study, ctx: ArmContext) -> None:
    """Run trials until the arm's budget of finished (complete or pruned) trials is met."""
    objective = make_objective(ctx)
    budget = ctx.n_trials
    run_waiting_together(study, ctx)  # its baselines (and trials enqueued again) as one group, where exact
    seen: dict[int, float] = {}
    while (move := next_move(study, budget, seen)) != "done":
        if move == "give up":
            total = len(study.get_trials(deepcopy=False))
            done, _, _ = trial_counts(study)
            print(f"[{ctx.arm}] giving up after {total} attempts ({done}/{budget} finished)", file=sys.stderr)
            return
        if move == "wait":
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial (RDB heartbeats) is retried
            time.sleep(1.0)  # the last trials run in other workers; wait in case one of them fails
            continue
        start = time.perf_counter()
        n_timed = len(ctx.timings)
        ran: list[optuna.trial.FrozenTrial] = []
        study.optimize(objective, n_trials=1, catch=(NonFiniteLoss, OverBudget), callbacks=[_collect(ran)])
        if len(ctx.timings) > n_timed:  # the trial trained: the rest of its wall time is overhead
            train_s, tracking_s = ctx.timings[-1][:2]
            ctx.timings[-1] = (train_s, tracking_s, time.perf_counter() - start)
        done, _, _ = trial_counts(study)
        print(f"[{ctx.arm}] {outcome(ran[0]) if ran else 'no trial'}; {done}/{budget} trials finished", flush=True)


def _collect(into: list):
    return lambda _study, trial: into.append(trial)


def overhead_fraction(timings: list[tuple]) -> float | None:
    """Share of the trials' wall time spent outside training: Optuna calls, MLflow calls, building the arm."""
    full = [t for t in timings if len(t) == 3]
    wall = sum(w for _, _, w in full)
    if not wall:
        return None
    pure_training = sum(train - tracking for train, tracking, _ in full)
    return 1 - pure_training / wall


def best_of(study: optuna.Study) -> tuple[float, dict]:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return float("nan"), {}
    best = max(done, key=lambda t: t.values[0])
    return best.values[0], dict(best.params)


def check_prepared(spec: Spec, storage, names: dict[str, str], workdir: Path) -> None:
    """A worker joins what a --prepare-only (or a plain) run made: its studies and base checkpoint."""
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    missing = [n for n in names.values() if n not in existing]
    base = workdir / f"base-{spec.base_digest()}" / "model.pt"
    if missing or (search_trains_base(spec) and not base.is_file()):  # else the search has no base to find
        what = f"studies {missing}" if missing else f"the base checkpoint {base}"
        raise SpecError(
            f"--worker: {what} not found; run `rethink study {spec.name} --prepare-only` with the same "
            f"--storage and --workdir first"
        )


def run_spec(spec: Spec, opts: RunOptions) -> SpecResult:
    if opts.workers > 1 and opts.storage.startswith("sqlite"):
        raise SpecError(
            "several workers need a journal file (--storage journal:optuna.log) or PostgreSQL; "
            "SQLite locks under parallel writers"
        )
    if not opts.worker:  # a second process on this spec is refused, naming the owner, before it opens anything
        claim(opts.storage, spec.name)
    # a bad storage URL fails before anything is recorded; under Ray the one the proxy also serves
    storage = opts.cluster.driver_storage if opts.cluster else make_storage(opts.storage)
    names = resolve_study_names(spec, storage, opts.new_study)  # a changed spec is refused before training
    runtime = opts.runtime
    workdir = Path(opts.workdir) / spec.name
    if opts.worker:
        check_prepared(spec, storage, names, workdir)
    data = load_data(spec)  # a bad dataset is refused before any run is opened
    check_model_fits(spec, data[0])  # and a library model that cannot take its images
    uri = configure(opts.tracking_uri)
    tree = RunTree(spec.name)
    root = tree.root(
        f"spec {spec.name}", {"rethink.spec": spec.name, "rethink.spec_digest": spec.digest()}, reopen=not opts.worker
    )
    if not opts.worker and not is_shared(opts.storage) and (n := close_stale_runs(tree, root)):
        print(f"closed {n} run(s) a killed process left RUNNING", flush=True)
    trunk = build_trunk(spec, tree, root, workdir, runtime, train_missing=not opts.worker, data=data)
    # B and P are known now (and the architecture arms' own); before any trial trains
    check_reach(spec, trunk.budgets, f"spec {spec.name}: ", trunk.arch_caps)
    n_val, classes = len(trunk.split.y_eval), trunk.split.num_classes
    if (
        not opts.worker
        and trunk.base_trained
        and (caveat := check_base_learned(spec.name, trunk.base_val_acc, n_val, classes, opts.allow_chance_base))
    ):
        print(f"warning: {caveat}", file=sys.stderr, flush=True)
    tree.log_params(root, {"spec": spec.name, "spec_digest": spec.digest(), "storage": redact(opts.storage)})
    tree.client.log_dict(root, spec.model_dump(mode="json"), "spec.json")

    arms: list[tuple[str, optuna.Study, ArmContext]] = []
    for arm in study_arms(spec):
        recipe = default_recipe(arm_of(arm), trunk.base_config, trunk.base_flops, trunk.pruned_flops)
        study = open_study(spec, arm, names[arm], storage, recipe.epochs)
        if not opts.worker:
            if not is_shared(opts.storage) and (n := recover_interrupted(study, tree)):
                print(f"[{arm}] {n} interrupted trial(s) will be retried", flush=True)
            if opts.cluster is not None and (n := recover_interrupted(study, tree, owner="driver")):
                print(f"[{arm}] {n} trial(s) a stopped Ray driver left will be retried", flush=True)
            close_stale_trial_runs(study, tree)
            n_baselines = enqueue_baselines(study, spec, arm, trunk)
            if n := requeue_lost(study):
                print(f"[{arm}] {n} trial(s) that ended without a result will run again", flush=True)
        else:
            n_baselines = len(study.user_attrs.get("baselines", {}))
        arm_run = tree.child(root, f"arm:{arm}", "arm", {"arm": arm, "rethink.spec_digest": spec.digest()})
        if not opts.worker:
            tree.reopen(arm_run)
        for k, v in {
            "optuna.study_name": study.study_name,
            "optuna.storage": redact(opts.storage),
            "optuna.sampler": spec.study.sampler,
            "optuna.seed": spec.study.seed,
            "mode": spec.study.mode,
            "rows": ",".join(rows_of(spec, arm)),
            "epochs_searched": "{}-{}".format(*rng)
            if (rng := epoch_range(spec, arm, trunk.caps_for(arm)))
            else "fixed",
            "n_trials": f"{spec.study.n_trials} searched + {n_baselines} baselines",
        }.items():
            tree.client.set_tag(arm_run, k, str(v))
        study.set_user_attr("mlflow_arm_run_id", arm_run)
        ctx = ArmContext(
            arm,
            trunk,
            recipe,
            study.study_name,
            arm_run,
            tree,
            spec.study.mode,
            runtime,
            spec.study.n_trials + n_baselines,
            epoch_range(spec, arm, trunk.caps_for(arm)) or recipe.epochs,
            parallel=allows_parallel(opts.storage),
        )
        arms.append((arm, study, ctx))

    if opts.prepare_only:
        pass
    elif opts.cluster is not None:
        run_trials_on_cluster(arms, opts.cluster, root, workdir)
    elif opts.workers > 1 and not opts.worker:
        _spawn_workers(opts, [study for _, study, _ in arms], tree)
    else:
        for _, study, ctx in arms:
            run_trials(study, ctx)  # whatever ends this, study/lifecycle.py ends the open runs

    result = SpecResult(spec, root, trunk, storage=opts.storage, tracking_uri=uri)
    complete = True
    for arm, study, ctx in arms:
        done, _, _ = trial_counts(study)
        complete &= done >= ctx.n_trials
        acc, params = best_of(study)
        overhead = overhead_fraction(ctx.timings)
        n_searched = searched_done(study)
        result.arms.append(
            ArmResult(arm, study.study_name, ctx.arm_run, n_searched, acc, params, overhead, done - n_searched)
        )
        if done >= ctx.n_trials and not opts.worker:
            metrics = {"best_val_acc": acc, "n_trials": n_searched, "n_baselines": done - n_searched}
            if overhead is not None:
                metrics["overhead_fraction"] = overhead
            tree.log_metrics(ctx.arm_run, metrics)
            tree.end(ctx.arm_run)
    result.complete = complete
    if not opts.worker and not os.environ.get("MLFLOW_RUN_ID"):
        note = None
        if opts.prepare_only:
            note = "prepared: workers started with --worker run the trials"
        elif not complete:
            note = "studies unfinished: run the spec again to finish them"
        tree.end(root, "FINISHED", note)
    return result


def _spawn_workers(opts: RunOptions, studies: list[optuna.Study], tree: RunTree) -> None:
    """N worker processes joining the prepared studies. A worker that dies has its running trials failed
    and retried at once, so the others finish the budget; waits for them all. The storage and tracking
    URLs reach them through the environment, so no credential is on a command line."""
    n = opts.workers
    env = dict(os.environ, RETHINK_STORAGE=opts.storage, MLFLOW_TRACKING_URI=mlflow.get_tracking_uri())
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # share the cores, not fight
    procs = [subprocess.Popen(list(opts.worker_cmd), env=env) for _ in range(n)]
    try:
        running = list(procs)
        while running:
            time.sleep(0.5)
            for p in [p for p in running if p.poll() is not None]:
                running.remove(p)
                if p.returncode != 0:
                    retried = sum(recover_interrupted(s, tree, pid=p.pid) for s in studies)
                    print(f"worker {p.pid} exited with {p.returncode}; {retried} trial(s) retried", file=sys.stderr)
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
