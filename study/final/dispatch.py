"""Where a group of final (or confirmation) runs trains: in this process (`groups.train_pending`), or under
`--engine ray` split into as many groups as the cluster runs at once, each group one Ray task that trains
its runs fused (rethink.fuse) and records them as this process would. Models travel with a digest of their
weights, checked on arrival both ways; a group whose worker dies is ended KILLED and trained again."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from rethink.splits import Split
from rethink.train import History, Runtime
from study.plan.spec import SpecError
from study.records.cluster import Cluster, Endpoints, connect_task, state_digest, worker_tags
from study.records.lifecycle import ending
from study.records.tracking import RunTree

from .groups import Pending, Score, train_pending

MAX_ATTEMPTS = 3  # a group lost with its worker is trained again, at most this many times in all


def train_runs(
    pending: Sequence[Pending],
    split: Split,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    score: Score,
    heading: str,
    kind: str = "final",
    raise_failures: bool = True,
    cluster: Cluster | None = None,
    keep: Callable[[int, History], None] | None = None,
) -> tuple[list[str], list[History | BaseException]]:
    """`groups.train_pending`, here or on the cluster; on the cluster each run's trained weights come back
    into its `Pending.model`, so what follows (checkpoints, pruning) reads them as after a local group.
    `keep(k, history)` saves what run k leaves (checkpoints) in this process: here as each run ends, before
    its MLflow run ends; on the cluster once its weights are back."""
    if cluster is None or not pending:

        def finish(k: int, history: History) -> dict[str, float]:
            if keep is not None:
                keep(k, history)
            return score(k, history)

        return train_pending(pending, split, tree, root, runtime, finish, heading, kind, raise_failures)
    run_ids, outcomes = _on_cluster(list(pending), split, tree, root, runtime, score, heading, kind, cluster)
    if keep is not None:
        for k, outcome in enumerate(outcomes):
            if isinstance(outcome, History):
                keep(k, outcome)
    if raise_failures:
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    return run_ids, outcomes


def groups_of(pending: Sequence[Pending], n: int) -> list[list[int]]:
    """`n` groups of run indices with about equal epochs each: longest runs first, each to the lightest group."""
    n = max(1, min(n, len(pending)))
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for k in sorted(range(len(pending)), key=lambda k: -pending[k].config.epochs):
        g = load.index(min(load))
        groups[g].append(k)
        load[g] += pending[k].config.epochs
    return [sorted(g) for g in groups if g]


def group_task(
    endpoints: Endpoints,
    runs: list[Pending],
    digests: list[str],
    split: Split,
    experiment: tuple[str, str],
    root: str,
    runtime: Runtime,
    score: Score,
    heading: str,
    kind: str,
    threads: int,
) -> tuple[list[str], list, list[dict]]:
    """One group in a Ray worker: the models checked against their digests, trained and recorded; returns
    the run ids, the outcomes and the trained weights with their digests."""
    connect_task(endpoints, threads)
    for p, digest in zip(runs, digests, strict=True):
        if state_digest(p.model.state_dict()) != digest:
            raise SpecError(f"{p.name}: the model that arrived does not match its digest {digest[:12]}")
    tree = RunTree(*experiment)
    for p in runs:
        p.tags = p.tags | worker_tags()
    run_ids, outcomes = train_pending(runs, split, tree, root, runtime, score, heading, kind, raise_failures=False)
    states = []
    for p in runs:
        state = {k: v.detach().cpu() for k, v in p.model.state_dict().items()}
        states.append({"state": state, "digest": state_digest(state)})
    return run_ids, outcomes, states


def _on_cluster(pending, split, tree, root, runtime, score, heading, kind, cluster):
    ray = cluster.ray
    remote = ray.remote(group_task).options(**cluster.task_options(), name=f"rethink-{kind}")
    split_ref = cluster.put_once(split)  # the final split serves the bases and the picks alike
    digests = [state_digest(p.model.state_dict()) for p in pending]
    experiment = (tree_name(tree), tree.experiment_id)
    run_ids: list[str] = [""] * len(pending)
    outcomes: list = [None] * len(pending)
    flights: dict = {}  # ref -> (indices, attempt, launched at in ms)

    def launch(ks: list[int], attempt: int) -> None:
        label = f"{heading} [Ray task: {len(ks)} of {len(pending)} runs]"
        ref = remote.remote(
            cluster.endpoints,
            [pending[k] for k in ks],
            [digests[k] for k in ks],
            split_ref,
            experiment,
            root,
            runtime,
            score.subset(ks),
            label,
            kind,
            cluster.threads,
        )
        flights[ref] = (ks, attempt, int(time.time() * 1000))

    groups = groups_of(pending, cluster.slots)
    print(f"{heading}: {len(pending)} runs as {len(groups)} Ray task(s)", file=sys.stderr, flush=True)
    for ks in groups:
        launch(ks, 1)
    try:
        while flights:
            ready, _ = ray.wait(list(flights), num_returns=1)
            for ref in ready:
                ks, attempt, launched = flights.pop(ref)
                try:
                    ids, outs, states = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise (e.cause if isinstance(e.cause, BaseException) else e) from None
                except ray.exceptions.RayError as e:  # its worker or node died
                    reason = f"its Ray worker was lost ({type(e).__name__}); the run was trained again"
                    _end_attempt(tree, pending, ks, kind, launched, reason)
                    if attempt >= MAX_ATTEMPTS:
                        lost = f"{heading}: a Ray task was lost {attempt} times ({type(e).__name__})"
                        raise SpecError(lost) from None
                    print(f"{heading}: a Ray task was lost ({type(e).__name__}); retrying", file=sys.stderr, flush=True)
                    launch(ks, attempt + 1)
                    continue
                for k, run_id, out, st in zip(ks, ids, outs, states, strict=True):
                    if state_digest(st["state"]) != st["digest"]:
                        raise SpecError(f"{pending[k].name}: the weights that came back do not match their digest")
                    pending[k].model.load_state_dict(st["state"])
                    run_ids[k], outcomes[k] = run_id, out
    except BaseException as e:
        for ref in flights:
            ray.cancel(ref, force=True)
        status, reason = ending(e)
        for ks, _, launched in flights.values():
            _end_attempt(tree, pending, ks, kind, launched, reason, status)
        raise
    return run_ids, outcomes


def tree_name(tree: RunTree) -> str:
    return tree.client.get_experiment(tree.experiment_id).name


def _end_attempt(tree, pending, ks, kind, since_ms, reason, status="KILLED") -> None:
    """The runs a lost (or stopped) group made: ended `status` with the reason, finished ones included (their
    results never came back, so they are trained again), leaving one FINISHED run per digest."""
    for k in ks:
        digest = pending[k].tags.get("rethink.digest")
        runs = tree.client.search_runs(
            [tree.experiment_id],
            f"tags.`rethink.kind` = '{kind}' and tags.`rethink.digest` = '{digest}' "
            f"and attributes.start_time >= {since_ms}",
        )
        for run in runs:
            if run.info.status in ("RUNNING", "FINISHED"):
                tree.end(run.info.run_id, status, reason)
