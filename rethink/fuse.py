"""A group of runs trained together (the seeds of one config, say), as the runtime's `fuse` says:

- stacked: same-shape runs as one computation (rethink/stacked.py); runs of other shapes apart;
- parallel: each run in its own thread with a share of the cores (a small net's ops are too small to use
  two cores; two runs side by side use both). The runs' epoch-level callbacks (tracking, progress) take
  one lock, so records are written one at a time; steps run concurrently;
- off: one after another.

Each run trains on its own batches with its own recipe and callbacks, and its result equals what training
it alone gives, within the tolerance the tests state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch

from .runtime import Runtime
from .splits import Split
from .stacked import StackedStep, stack_key
from .train import Callback, History, Job, PlainStep, train_jobs

Outcome = History | BaseException
OnDone = Callable[[int, Outcome], None]
OnStart = Callable[[int], None]


class Cancelled(KeyboardInterrupt):
    """A run of a parallel group stopped because the group is stopping (a signal, another run's error)."""


class _CancelCheck(Callback):
    def __init__(self, event: threading.Event):
        self.event = event

    def after_step(self, model) -> None:
        if self.event.is_set():
            raise Cancelled("the group of runs was stopped")


class _Serialized(Callback):
    """A callback whose start, epoch-end and end hooks take the group's lock; its per-step hooks (masks,
    sparsity) act on its own run's model and need none."""

    def __init__(self, inner: Callback, lock: threading.RLock):
        self.inner, self.lock = inner, lock

    def on_train_start(self, model, optimizer) -> None:
        with self.lock:
            self.inner.on_train_start(model, optimizer)

    def after_backward(self, model) -> None:
        self.inner.after_backward(model)

    def after_step(self, model) -> None:
        self.inner.after_step(model)

    def after_epoch_train(self, model) -> None:
        self.inner.after_epoch_train(model)

    def on_epoch_end(self, metrics, model) -> None:
        with self.lock:
            self.inner.on_epoch_end(metrics, model)

    def on_train_end(self, history) -> None:
        with self.lock:
            self.inner.on_train_end(history)


def stacked_groups(jobs: Sequence[Job]) -> list[list[int]]:
    """The indices of jobs that can be stacked together (same architecture, steps and optimizer)."""
    groups: dict[tuple, list[int]] = {}
    for k, job in enumerate(jobs):
        groups.setdefault(stack_key(job), []).append(k)
    return list(groups.values())


def parallel_lanes(n_runs: int, threads: int) -> int:
    """How many runs of a parallel group train at once, each on its share of the threads: one per thread
    when they split evenly or are many; all at once when a last round would leave cores idle (3 or 5 runs on
    2 cores finish sooner side by side than 2, 2 then 1 alone). Fixed for the whole group, so a run's thread
    count, and so its numbers, never depend on how fast the others are."""
    if n_runs % threads == 0 or n_runs > 4 * threads:
        return min(n_runs, threads)
    return n_runs


def fusion_plan(jobs: Sequence[Job], runtime: Runtime) -> list[tuple[str, int]]:
    """For each job, how it will train: (mode, size of the group it trains in); ('off', 1) alone."""
    mode = runtime.fusion(len(jobs))
    if mode == "parallel":
        return [(mode, len(jobs))] * len(jobs)
    if mode == "stacked":
        plan = [("off", 1)] * len(jobs)
        for group in stacked_groups(jobs):
            for k in group:
                plan[k] = (mode, len(group)) if len(group) > 1 else ("off", 1)
        return plan
    return [("off", 1)] * len(jobs)


def train_group(
    jobs: Sequence[Job],
    split: Split,
    runtime: Runtime = Runtime(),
    eval_final_only: bool = False,
    on_done: OnDone | None = None,
    on_start: OnStart | None = None,
) -> list[Outcome]:
    """Train `jobs` as one group (see the module's docstring); entry k is job k's History, or the exception
    that ended it alone (NonFiniteLoss). `on_start(k)` is called as job k starts training, `on_done(k,
    entry)` as it ends. An exception that is no one job's outcome (a signal, a tracking server gone, a bug)
    stops the whole group and is raised."""
    mode = runtime.fusion(len(jobs))
    if mode == "parallel":
        return _parallel(jobs, split, runtime, eval_final_only, on_done, on_start)
    groups = stacked_groups(jobs) if mode == "stacked" else [[k] for k in range(len(jobs))]
    results: list[Outcome | None] = [None] * len(jobs)
    for group in groups:
        for k in group:
            if on_start:
                on_start(k)
        engine = StackedStep if len(group) > 1 else PlainStep
        done = _relay(group, on_done)
        outcomes = train_jobs([jobs[k] for k in group], split, runtime, eval_final_only, engine, done)
        for k, outcome in zip(group, outcomes, strict=True):
            results[k] = outcome
    return results


def _relay(group: list[int], on_done: OnDone | None) -> OnDone | None:
    """on_done for a sub-group: its indices mapped back to the group's."""
    return None if on_done is None else (lambda j, outcome: on_done(group[j], outcome))


def _parallel(
    jobs: Sequence[Job],
    split: Split,
    runtime: Runtime,
    eval_final_only: bool,
    on_done: OnDone | None,
    on_start: OnStart | None,
) -> list[Outcome]:
    threads = torch.get_num_threads()
    lanes = parallel_lanes(len(jobs), threads)
    lock, cancel = threading.RLock(), threading.Event()
    # Longest first (by epochs), so the lanes finish together.
    queue = iter(sorted(range(len(jobs)), key=lambda k: -jobs[k].config.epochs))
    results: list[Outcome | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def lane(finished: threading.Event) -> None:
        try:
            while not cancel.is_set():
                with lock:
                    k = next(queue, None)
                if k is None:
                    return
                run(k)
        finally:
            finished.set()

    def run(k: int) -> None:
        job = jobs[k]
        callbacks = [*(_Serialized(cb, lock) for cb in job.callbacks), _CancelCheck(cancel)]

        def done(_: int, outcome: Outcome) -> None:
            results[k] = outcome
            if on_done:
                with lock:
                    on_done(k, outcome)

        try:
            if on_start:
                with lock:
                    on_start(k)
            train_jobs([Job(job.model, job.config, callbacks)], split, runtime, eval_final_only, on_done=done)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            results[k] = e
            if not isinstance(e, Cancelled):
                errors.append(e)
                cancel.set()

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // lanes))  # each lane's ops take their share of the cores
    finished = [threading.Event() for _ in range(lanes)]
    workers = [threading.Thread(target=lane, args=(f,), name=f"rethink-lane-{i}", daemon=True)
               for i, f in enumerate(finished)]  # fmt: skip
    try:
        for w in workers:
            w.start()
        _wait(finished, interruptible=True)
    except BaseException:
        cancel.set()  # each lane stops within one step
        _wait([f for f, w in zip(finished, workers, strict=True) if w.ident is not None], interruptible=False)
        raise
    finally:
        for w in workers:
            if w.ident is not None:
                w.join(5)  # their work is done: only the threads' own exit is left
        torch.set_num_threads(previous)
    if errors:
        raise errors[0]
    return results


def _wait(events: list[threading.Event], interruptible: bool) -> None:
    """Wait until every event is set. Event.wait, not Thread.join: a Ctrl-C that interrupts a join can leave
    the thread marked as stopped while it still runs (CPython bpo-45274's fix). Not interruptible: a second
    Ctrl-C while the lanes stop must not leave one of them running."""
    for event in events:
        while True:
            try:
                if event.wait(0.1):
                    break
            except KeyboardInterrupt:
                if interruptible:
                    raise
