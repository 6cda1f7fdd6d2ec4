"""One spec end to end: trunk (base → prune) → one Optuna study per arm, each to its trial budget."""

from __future__ import annotations

import json
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

from .layout import LAYOUT, baseline_trials, rows_of, study_arms, study_name
from .objective import ArmContext, OverBudget, make_objective
from .spec import Spec, SpecError
from .storage import DEFAULT_STORAGE, allows_parallel, is_shared, make_storage, redact, retry_trial
from .tracking import RunTree, configure, trial_run_id
from .trunk import Trunk, build_trunk

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
ATTEMPTS_PER_TRIAL = 3  # failed (e.g. diverged) trials are replaced, up to this many attempts per budgeted trial


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


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    s = spec.study
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    # Optuna 5: TPE is multivariate for one objective; constant_liar keeps parallel workers apart.
    return optuna.samplers.TPESampler(seed=s.seed, constant_liar=True, n_startup_trials=max(2, s.n_trials // 4))


def make_hpo_pruner(spec: Spec, epochs: int) -> optuna.pruners.BasePruner:
    if spec.study.mode == "pareto" or spec.study.hpo_pruner == "none":
        return optuna.pruners.NopPruner()  # multi-objective trials cannot be pruned
    if spec.study.hpo_pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)


def diff_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_fields(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def resolve_study_names(spec: Spec, storage, new_study: bool = False) -> dict[str, str]:
    """The study of each arm that matches this spec, checked before any training: an existing study made
    from other spec fields (or an older layout) is refused, or with --new-study a fresh `.vN` is named.
    A `.vN` made earlier for exactly this spec is found again, so the report and `best` use the same ones."""
    fields = json.loads(json.dumps(spec.study_fields()))
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    names = {}
    if spec.study.mode == "pareto" and not new_study:
        old = [study_name(spec, a) for a in ("scratch-e", "scratch-b") if study_name(spec, a) in existing]
        old = [n for n in old if existing[n].user_attrs.get("layout") != LAYOUT]
        if old:
            raise SpecError(
                f"the storage holds studies of an older layout for spec {spec.name!r} ({', '.join(old)}); pareto "
                f"mode now searches Scratch-E and Scratch-B in one study {study_name(spec, 'scratch')!r}. Use "
                f"another storage (--storage sqlite:///new.db), another name (--set name={spec.name}-v2), or "
                f"pass --new-study to start the new layout beside them"
            )
    for arm in study_arms(spec):
        base = study_name(spec, arm)
        chain = [base] + [f"{base}.v{n}" for n in range(2, 1000) if f"{base}.v{n}" in existing]
        matching = [n for n in chain if n in existing and _same(existing[n].user_attrs, fields)]
        if matching:
            names[arm] = matching[-1]
        elif base not in existing:
            names[arm] = base
        elif new_study:
            n = 2
            while f"{base}.v{n}" in existing:
                n += 1
            names[arm] = f"{base}.v{n}"
        else:
            attrs = existing[base].user_attrs
            if attrs.get("layout") != LAYOUT:
                why = "an older layout of rethink (before searched schedules and baselines on top of n_trials)"
            else:
                why = "a different spec (" + "; ".join(diff_fields(attrs.get("spec_fields", {}), fields)) + ")"
            raise SpecError(
                f"study {base!r} was created from {why}; pass --new-study to start fresh studies beside it, "
                f"give the setting its own name (--set name={spec.name}-2), or restore the spec"
            )
    return names


def _same(attrs: dict, fields: dict) -> bool:
    return attrs.get("layout") == LAYOUT and attrs.get("spec_fields") == fields


def open_study(spec: Spec, arm: str, name: str, storage, epochs: int) -> optuna.Study:
    """Create or load the arm's study (its name from resolve_study_names) and record what made it."""
    directions = ["maximize"] if spec.study.mode == "fixed-budget" else ["maximize", "minimize"]
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,
        load_if_exists=True,
        sampler=make_sampler(spec),
        pruner=make_hpo_pruner(spec, epochs),
    )
    if "spec_fields" not in study.user_attrs:
        objectives = ["val_acc"] if len(directions) == 1 else ["val_acc", "train_flops"]
        study.set_metric_names(objectives)
        for key, value in {
            "spec_fields": json.loads(json.dumps(spec.study_fields())),
            "layout": LAYOUT,
            "spec": spec.name,
            "arm": arm,
            "rows": rows_of(spec, arm),
            "spec_digest": spec.digest(),
            "n_trials": spec.study.n_trials,
            "verdict": spec.verdict.model_dump(mode="json"),  # the pre-registered analysis, fixed at creation
            "sampler": {
                "name": spec.study.sampler,
                "seed": spec.study.seed,
                "constant_liar": True,
                "multivariate": "optuna default",
            },
            "objectives": objectives,
            "versions": {
                "optuna": optuna.__version__,
                "mlflow": mlflow.__version__,
                "torch": __import__("torch").__version__,
            },
        }.items():
            study.set_user_attr(key, value)
    return study


def enqueue_baselines(study: optuna.Study, spec: Spec, arm: str, trunk: Trunk) -> int:
    """The study's baselines, enqueued once on top of its searched trials; returns how many it has."""
    if "baselines" in study.user_attrs:
        return len(study.user_attrs["baselines"])
    trials = baseline_trials(spec, arm, trunk.budgets, trunk.base_config)
    for b in trials:
        attrs = {"baseline": b.name, "baseline_source": b.source} | ({"baseline_row": b.row} if b.row else {})
        study.enqueue_trial(b.params, user_attrs=attrs)
    study.set_user_attr("baselines", {b.name: b.source for b in trials})
    return len(trials)


def recover_interrupted(study: optuna.Study, tree: RunTree, pid: int | None = None) -> int:
    """Trials left RUNNING by a killed process (local storages; with `pid`, only that worker's): mark
    them failed, end their MLflow runs as KILLED, and enqueue the same parameters again."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if pid is not None and t.user_attrs.get("worker_pid") != pid:
            continue
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "interrupted; retried")
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        if run_id := trial_run_id(tree.client, study.study_name, t, [tree.experiment_id]):
            tree.end(run_id, "KILLED", "the process running this trial was interrupted; the trial was retried")
        n += retry_trial(study, t)
    return n


def settled(t: optuna.trial.FrozenTrial) -> bool:
    """Counts toward the budget: finished, or a baseline that failed for good (it diverged). A failed
    searched trial is replaced by a new one; a baseline that failed otherwise is enqueued again."""
    diverged_baseline = t.user_attrs.get("baseline") and t.user_attrs.get("failed_for_good")
    return t.state in DONE or (t.state == TrialState.FAIL and bool(diverged_baseline))


def requeue_lost_baselines(study: optuna.Study) -> int:
    """Baselines whose trial ended without a result (interrupted, a tracking server gone) and have no retry
    queued: enqueue them again, so every study keeps all its baselines."""
    trials = study.get_trials(deepcopy=False)
    alive = (*DONE, TrialState.RUNNING, TrialState.WAITING)
    kept = {t.user_attrs.get("baseline") for t in trials if t.state in alive or settled(t)}
    n = 0
    for t in trials:
        name = t.user_attrs.get("baseline")
        if name and name not in kept and t.state == TrialState.FAIL and retry_trial(study, t):
            kept.add(name)
            n += 1
    return n


def _counts(study: optuna.Study) -> tuple[int, int, int]:
    trials = study.get_trials(deepcopy=False)
    done = sum(settled(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running, len(trials)


def searched_done(study: optuna.Study) -> int:
    return sum(t.state in DONE and not t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False))


def run_trials(study: optuna.Study, ctx: ArmContext) -> None:
    """Run trials until the arm's budget of finished (complete or pruned) trials is met."""
    objective = make_objective(ctx)
    budget = ctx.n_trials
    while True:
        done, running, total = _counts(study)
        if done >= budget:
            return
        if total >= budget * ATTEMPTS_PER_TRIAL:
            print(f"[{ctx.arm}] giving up after {total} attempts ({done}/{budget} finished)", file=sys.stderr)
            return
        if done + running >= budget:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial (RDB heartbeats) is retried
            time.sleep(1.0)  # the last trials run in other workers; wait in case one of them fails
            continue
        start = time.perf_counter()
        n_timed = len(ctx.timings)
        study.optimize(objective, n_trials=1, catch=(NonFiniteLoss, OverBudget))
        if len(ctx.timings) > n_timed:  # the trial trained: the rest of its wall time is overhead
            train_s, tracking_s = ctx.timings[-1][:2]
            ctx.timings[-1] = (train_s, tracking_s, time.perf_counter() - start)
        done, _, _ = _counts(study)
        print(f"[{ctx.arm}] {done}/{budget} trials finished", flush=True)


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


def run_spec(spec: Spec, opts: RunOptions) -> SpecResult:
    if opts.workers > 1 and opts.storage.startswith("sqlite"):
        raise SpecError(
            "several workers need a journal file (--storage journal:optuna.log) or PostgreSQL; "
            "SQLite locks under parallel writers"
        )
    storage = make_storage(opts.storage)  # a bad storage URL fails before anything is recorded
    names = resolve_study_names(spec, storage, opts.new_study)  # a changed spec is refused before training
    uri = configure(opts.tracking_uri)
    tree = RunTree(spec.name)
    root = tree.root(f"spec {spec.name}", {"rethink.spec": spec.name, "rethink.spec_digest": spec.digest()})
    runtime = opts.runtime
    workdir = Path(opts.workdir) / spec.name
    trunk = build_trunk(spec, tree, root, workdir, runtime, train_missing=not opts.worker)
    tree.log_params(root, {"spec": spec.name, "spec_digest": spec.digest(), "storage": redact(opts.storage)})
    tree.client.log_dict(root, spec.model_dump(mode="json"), "spec.json")

    arms: list[tuple[str, optuna.Study, ArmContext]] = []
    for arm in study_arms(spec):
        recipe = default_recipe(arm, trunk.base_config, trunk.base_flops, trunk.pruned_flops)
        study = open_study(spec, arm, names[arm], storage, recipe.epochs)
        if not opts.worker:
            if not is_shared(opts.storage) and (n := recover_interrupted(study, tree)):
                print(f"[{arm}] {n} interrupted trial(s) will be retried", flush=True)
            n_baselines = enqueue_baselines(study, spec, arm, trunk)
            if n := requeue_lost_baselines(study):
                print(f"[{arm}] {n} baseline trial(s) that ended without a result will run again", flush=True)
        else:
            n_baselines = len(study.user_attrs.get("baselines", {}))
        arm_run = tree.child(root, f"arm:{arm}", "arm", {"arm": arm, "rethink.spec_digest": spec.digest()})
        for k, v in {
            "optuna.study_name": study.study_name,
            "optuna.storage": redact(opts.storage),
            "optuna.sampler": spec.study.sampler,
            "optuna.seed": spec.study.seed,
            "mode": spec.study.mode,
            "rows": ",".join(rows_of(spec, arm)),
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
            parallel=allows_parallel(opts.storage),
        )
        arms.append((arm, study, ctx))

    try:
        if opts.prepare_only:
            pass
        elif opts.workers > 1 and not opts.worker:
            _spawn_workers(opts.workers, opts.worker_cmd, [study for _, study, _ in arms], tree)
        else:
            for _, study, ctx in arms:
                run_trials(study, ctx)
    except KeyboardInterrupt:
        if not opts.worker:
            for _, _, ctx in arms:
                tree.end(ctx.arm_run, "KILLED", "interrupted (SIGINT); re-run the spec to resume")
            if not os.environ.get("MLFLOW_RUN_ID"):
                tree.end(root, "KILLED", "interrupted (SIGINT); re-run the spec to resume")
        raise

    result = SpecResult(spec, root, trunk, storage=opts.storage, tracking_uri=uri)
    complete = True
    for arm, study, ctx in arms:
        done, _, _ = _counts(study)
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
    if complete and not opts.worker and not os.environ.get("MLFLOW_RUN_ID"):
        tree.end(root)
    return result


def _spawn_workers(n: int, cmd: tuple[str, ...], studies: list[optuna.Study], tree: RunTree) -> None:
    """N worker processes joining the prepared studies. A worker that dies has its running trials failed
    and retried at once, so the others finish the budget; waits for them all."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # share the cores, not fight
    procs = [subprocess.Popen(list(cmd), env=env) for _ in range(n)]
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
