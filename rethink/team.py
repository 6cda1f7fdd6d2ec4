"""The processes that train this process's runs with it (`Runtime.processes` > 1): this process is rank 0
(it holds the run's records: its callbacks log, report and checkpoint), the others follow. The team starts
on the first run that asks for it (spawned, joined over 127.0.0.1), is reused by later runs of the same size,
and ends at exit, when a run of another size comes, or when a run fails (a follower may be waiting in a
collective, so it is stopped rather than told). For each run, rank 0 sends the followers the model, the
recipe, the callbacks that change weights or gradients (`Callback.every_process`), the split (when it
changed) and the resume snapshot; every process then trains with DDPStep on its share of each batch, and a
stop asked by rank 0's callbacks (an Optuna prune, a budget) is agreed at the end of each epoch."""

from __future__ import annotations

import atexit
import dataclasses
import io
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .distributed import DDPStep
from .history import History
from .runtime import Runtime
from .splits import Split
from .train import Job, train_jobs

JOIN_TIMEOUT = timedelta(minutes=30)  # how long a collective waits for a process (rank 0 writing an epoch's records)
START_TIMEOUT = timedelta(minutes=5)  # how long the team may take to start (each follower imports torch)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at `host` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pack(obj) -> bytes:
    """torch.save's bytes of `obj`: tensors on any device, read back onto the CPU by `_unpack`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unpack(blob: bytes):
    # Bytes rank 0 of this team wrote a moment ago (models and callbacks are objects, not weights), never a
    # file: the same trust as multiprocessing's own pickles between a parent and its children.
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)


def _device(rank: int, runtime: Runtime) -> torch.device:
    return torch.device("cuda", rank) if runtime.resolve()[0].type == "cuda" else torch.device("cpu")


class Team:
    """Rank 0's side of a started team: the follower processes and the control group messages go over."""

    def __init__(self, size: int, cuda: bool):
        self.size, self.cuda = size, cuda
        if dist.is_initialized():
            raise RuntimeError("a process group is already set up here; start the study without torchrun")
        port, threads = free_port(), max(1, torch.get_num_threads() // size)
        ctx = mp.get_context("spawn")
        self.procs = [
            # not daemonic: a follower starts its own DataLoader workers (image folders)
            ctx.Process(target=_follow, args=(r, size, port, cuda, threads), daemon=False)
            for r in range(1, size)
        ]
        for p in self.procs:
            p.start()
        if cuda:
            torch.cuda.set_device(0)
        try:  # waits for every follower to connect, START_TIMEOUT at most (one that died at start never does)
            store = dist.TCPStore("127.0.0.1", port, size, is_master=True, timeout=START_TIMEOUT)
        except RuntimeError as e:
            for p in self.procs:
                p.terminate()
            raise RuntimeError(
                f"--gpus-per-trial {size}: the other {size - 1} process(es) did not start within {START_TIMEOUT} ({e})"
            ) from None
        dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=0, world_size=size, timeout=JOIN_TIMEOUT)
        self.control = dist.new_group(backend="gloo", timeout=JOIN_TIMEOUT)
        self.split: Split | None = None  # the split the followers hold
        self.threads = threads

    def send(self, message: dict | None) -> None:
        dist.broadcast_object_list([None if message is None else _pack(message)], src=0, group=self.control)

    def close(self, abort: bool = False) -> None:
        """Tell the followers to end (or, after a failure, stop them) and leave the process group."""
        if not abort:
            try:
                self.send(None)
            except Exception:  # noqa: BLE001 (a follower already gone: stop the rest below)
                abort = True
        for p in self.procs:
            p.join(timeout=0 if abort else 60)  # a follower told to end is gone in a moment; else it is stopped
            if p.is_alive():
                p.terminate()
                p.join()
        dist.destroy_process_group()


_team: Team | None = None


def close_team() -> None:
    """End the team, if one is running (a command's end; at exit otherwise)."""
    global _team
    if _team is not None:
        team, _team = _team, None
        team.close()


atexit.register(close_team)


def lead(
    jobs: Sequence[Job],
    split: Split,
    runtime: Runtime,
    eval_final_only: bool = False,
    on_done: Callable[[int, History | BaseException], None] | None = None,
    resume: dict | None = None,
) -> list[History | BaseException]:
    """train_jobs for one run on `runtime.processes` processes, this one rank 0 (see the module's text)."""
    global _team
    if len(jobs) != 1:
        raise ValueError("a distributed run trains one job (fusion is off when --gpus-per-trial > 1)")
    (job,) = jobs
    cuda = runtime.resolve()[0].type == "cuda"
    if _team is not None and (_team.size, _team.cuda) != (runtime.processes, cuda):
        close_team()
    if _team is None:
        _team = Team(runtime.processes, cuda)
    team = _team
    shared = [cb for cb in job.callbacks if cb.every_process]
    one = dataclasses.replace(runtime, device=str(_device(0, runtime)), processes=1)
    threads = torch.get_num_threads()
    try:
        team.send(
            {"model": job.model, "config": job.config, "callbacks": shared, "split": None if split is team.split
             else split, "eval_final_only": eval_final_only, "resume": resume, "runtime": one}
        )  # fmt: skip
        team.split = split
        torch.set_num_threads(team.threads)
        return train_jobs([job], split, one, eval_final_only, DDPStep, on_done, resume)
    except BaseException:
        _team = None
        team.close(abort=True)  # a follower may be waiting in a collective
        raise
    finally:
        torch.set_num_threads(threads)


def _follow(rank: int, size: int, port: int, cuda: bool, threads: int) -> None:
    """A follower: join the team, then train every run rank 0 sends until it sends None."""
    torch.set_num_threads(threads)
    if cuda:
        torch.cuda.set_device(rank)
    store = dist.TCPStore("127.0.0.1", port, size, is_master=False, timeout=START_TIMEOUT)
    dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=rank, world_size=size, timeout=JOIN_TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=JOIN_TIMEOUT)
    split = None
    try:
        while True:
            box = [None]
            dist.broadcast_object_list(box, src=0, group=control)
            if box[0] is None:
                return
            run = _unpack(box[0])
            split = run["split"] if run["split"] is not None else split
            runtime = dataclasses.replace(run["runtime"], device=str(_device(rank, run["runtime"])))
            job = Job(run["model"], run["config"], run["callbacks"])
            train_jobs([job], split, runtime, run["eval_final_only"], DDPStep, resume=run["resume"])
    finally:
        dist.destroy_process_group()
