"""Trials as Ray tasks (`--engine ray`). The driver stays Optuna's one client that asks and tells: it asks
each trial (so the sampler, the budgets and the baselines are exactly as with the local engine), samples its
parameters, and hands it to a task that declares its resources. The task opens the same trial through the
storage the driver names (PostgreSQL, or the driver's file served by Optuna's gRPC proxy), trains it with
the objective's own steps (its MLflow run under the study's arm run), and returns its value; the driver
tells it. A task whose worker or node dies is retried with the same parameters; Ctrl-C stops every task."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from rethink.arms import default_recipe
from rethink.errors import UserError
from rethink.prune.patterns import Pattern
from rethink.train import NonFiniteLoss, Runtime
from study.plan.layout import arm_of
from study.plan.space import suggest
from study.plan.spec import Spec
from study.records.cluster import Cluster, Endpoints, Parcel, connect_task, task_workdir
from study.records.lifecycle import ending
from study.records.storage import make_storage, retry_trial
from study.records.tracking import RunTree, trial_run_id

from .objective import ArmContext, make_objective, outcome
from .studies import ATTEMPTS_PER_TRIAL, make_hpo_pruner, trial_counts
from .trunk import Trunk, build_trunk, load_data


@dataclass(frozen=True)
class TrunkParcels:
    """The trunk's checkpoints as they travel to the tasks: the base, its init, the pruned model."""

    files: tuple[Parcel, ...]  # names relative to the spec's folder: base-<digest>/model.pt, ...
    root: str  # the spec's MLflow run, where the task finds the base and prune runs
    experiment_id: str
    task_dir: str | None = None  # where tasks keep them (env RETHINK_RAY_WORKDIR); None: the task's own default
    pattern: Pattern | None = None  # the transferred arm's layer pattern (read from another spec's folder)

    @classmethod
    def of(cls, trunk: Trunk, workdir: Path, root: str, experiment_id: str) -> TrunkParcels:
        folder = workdir / f"base-{trunk.spec.base_digest()}"
        names = ["model.pt", "init.pt", *sorted(p.name for p in folder.glob("pruned-*.pt"))]
        files = tuple(Parcel.of(folder / n, f"{folder.name}/{n}") for n in names if (folder / n).is_file())
        return cls(files, root, experiment_id, os.environ.get("RETHINK_RAY_WORKDIR"), trunk.pattern)


@dataclass(frozen=True)
class TaskArm:
    """What a trial task needs of its study besides the trunk (small: it is a task argument)."""

    arm: str
    study_name: str
    arm_run: str
    mode: str
    n_trials: int
    epochs: tuple[int, int, bool] | int


_TRUNKS: dict[tuple, Trunk] = {}  # per worker process: the trunk is unpacked and loaded once


def task_trunk(parcels: TrunkParcels, spec: Spec, runtime: Runtime) -> Trunk:
    """The trunk in a task: its checkpoints written to the task's own folder (digests checked), then loaded
    as any run loads them (weights only, the digest in each checkpoint checked)."""
    key = (spec.digest(), parcels.root, tuple(p.sha256 for p in parcels.files))
    if key not in _TRUNKS:
        folder = task_workdir(parcels.task_dir) / spec.name
        for p in parcels.files:
            p.unpack(folder)
        tree = RunTree(spec.name, parcels.experiment_id)
        _TRUNKS[key] = build_trunk(
            spec, tree, parcels.root, folder, runtime, False, load_data(spec), pattern=parcels.pattern
        )
    return _TRUNKS[key]


def trial_task(
    endpoints: Endpoints, parcels: TrunkParcels, spec: Spec, arm: TaskArm, trial_id: int, runtime: Runtime, threads: int
):
    """One trial, in a Ray worker: the trial the driver asked, trained with the objective's steps."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    connect_task(endpoints, threads)
    trunk = task_trunk(parcels, spec, runtime)
    recipe = default_recipe(arm_of(arm.arm), trunk.base_config, trunk.base_flops, trunk.pruned_flops)
    study = optuna.load_study(  # with the study's own hpo pruner: load_study's default would be a median one
        study_name=arm.study_name,
        storage=make_storage(endpoints.storage),
        pruner=make_hpo_pruner(spec, recipe.epochs),
    )
    tree = RunTree(spec.name, parcels.experiment_id)
    ctx = ArmContext(
        arm.arm, trunk, recipe, arm.study_name, arm.arm_run, tree, arm.mode, runtime, arm.n_trials, arm.epochs
    )
    return make_objective(ctx)(optuna.Trial(study, trial_id))


@dataclass
class Flight:
    """A trial out on the cluster: its study, its arm, its number."""

    study: optuna.Study
    ctx: ArmContext
    number: int


def run_trials_on_cluster(
    arms: list[tuple[str, optuna.Study, ArmContext]], cluster: Cluster, root: str, workdir: Path
) -> None:
    """Every study's trials as Ray tasks, as many at once as the cluster's resources allow, until each
    study's budget is met; the studies share the slots, waiting trials (baselines, retries) first."""
    if not arms:
        return
    ray = cluster.ray
    trunk, tree = arms[0][2].trunk, arms[0][2].tree
    spec = trunk.spec
    parcels = ray.put(TrunkParcels.of(trunk, workdir, root, tree.experiment_id))
    remote = ray.remote(trial_task).options(**cluster.task_options(), name="rethink-trial")
    flights: dict = {}
    order = deque(arms)

    def launch() -> bool:
        for _ in range(len(order)):
            arm, study, ctx = order[0]
            order.rotate(-1)
            done, running, total = trial_counts(study)
            if done + running >= ctx.n_trials or total >= ctx.n_trials * ATTEMPTS_PER_TRIAL:
                continue
            with warnings.catch_warnings():  # heartbeats serve Study.optimize's workers; the driver tracks its own
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = study.ask()
            trial.set_user_attr("driver_pid", os.getpid())  # its tasks die with this process: a later driver
            trial.set_user_attr("driver_host", socket.gethostname())  # retries what it left RUNNING
            params = suggest(trial, spec.space, ctx.epochs)  # the driver samples; the task reads them back
            task_arm = TaskArm(arm, study.study_name, ctx.arm_run, ctx.mode, ctx.n_trials, ctx.epochs)
            ref = remote.remote(
                cluster.endpoints, parcels, spec, task_arm, trial._trial_id, ctx.runtime, cluster.threads
            )
            flights[ref] = Flight(study, ctx, trial.number)
            kind = trial.user_attrs.get("baseline") or "searched"
            print(f"[{arm}] trial {trial.number} ({kind}) sent to Ray: {params}", flush=True)
            return True
        return False

    try:
        while True:
            while len(flights) < cluster.slots and launch():
                pass
            if not flights:
                break
            ready, _ = ray.wait(list(flights), num_returns=1)
            for ref in ready:
                _settle(ray, flights.pop(ref), ref, tree)
    except BaseException as e:
        _stop(ray, flights, tree, e)
        raise
    for _, study, ctx in arms:
        done, _, total = trial_counts(study)
        if done < ctx.n_trials:
            print(f"[{ctx.arm}] giving up after {total} attempts ({done}/{ctx.n_trials} finished)", file=sys.stderr)


def _settle(ray, f: Flight, ref, tree: RunTree) -> None:
    """Tell Optuna how a task ended: its value; FAIL when it diverged; PRUNED when the hpo pruner stopped it;
    lost and retried when its worker or node died; a bug in the task is raised here after the tell."""
    study, arm = f.study, f.ctx.arm
    try:
        value = ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if isinstance(e.cause, BaseException) else e
        if isinstance(cause, optuna.TrialPruned):
            study.tell(f.number, state=TrialState.PRUNED)
        elif isinstance(cause, UserError):  # the task's host, not the config (a folder it cannot write): lost
            lose(study, f.number, tree, f"{type(cause).__name__}: {cause}"[:500], retry=False)
            raise cause from None
        else:
            study.tell(f.number, state=TrialState.FAIL)
            if not isinstance(cause, NonFiniteLoss):
                raise cause from None
    except ray.exceptions.RayError as e:  # the worker or its node died, the task was lost
        reason = f"the Ray worker running this trial was lost ({type(e).__name__}); the trial was retried"
        lose(study, f.number, tree, reason, retry=True)
    else:
        study.tell(f.number, value)
    frozen = study.get_trials(deepcopy=False)[f.number]
    done, _, _ = trial_counts(study)
    print(f"[{arm}] {outcome(frozen)}; {done}/{f.ctx.n_trials} trials finished", flush=True)


def lose(study: optuna.Study, number: int, tree: RunTree, reason: str, retry: bool) -> None:
    """A trial that ended through no fault of its config: marked lost (its retry enqueued first, when
    `retry`, so no fresh trial takes its place in the budget), failed, and its MLflow run ended KILLED."""
    t = study.get_trials(deepcopy=False)[number]
    study._storage.set_trial_user_attr(t._trial_id, "lost", True)
    study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
    if retry:
        retry_trial(study, t)
    if t.state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL)
    run_id = trial_run_id(tree.client, study.study_name, study.get_trials(deepcopy=False)[number])
    if run_id and tree.client.get_run(run_id).info.status in ("RUNNING", "FINISHED"):
        tree.end(run_id, "KILLED", reason)  # a FINISHED one finished after the stop: its value never counted


def _stop(ray, flights: dict, tree: RunTree, e: BaseException) -> None:
    """Whatever stopped the driver (Ctrl-C, SIGTERM, a bug) stops every task: a trial whose value is already
    back is told; every other task's worker is killed, its trial marked lost (the next run of the command
    runs it again) and its run ended KILLED, even one that finished after the stop (its value never reached
    Optuna)."""
    refs = list(flights)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
    for ref in ready:
        f = flights[ref]
        try:
            f.study.tell(f.number, ray.get(ref, timeout=0))
            del flights[ref]
        except Exception:  # noqa: BLE001 - it failed or is gone: lost like the others
            pass
    for ref in flights:
        ray.cancel(ref, force=True)
    reason = ending(e)[1] if isinstance(e, KeyboardInterrupt) else f"the driver stopped: {type(e).__name__}: {e}"
    for f in flights.values():
        try:
            lose(f.study, f.number, tree, reason[:500], retry=False)
        except Exception as err:  # noqa: BLE001 - the storage or server gone: the next run reconciles
            print(f"could not close trial {f.number}: {err}", file=sys.stderr)
