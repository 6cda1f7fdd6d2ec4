"""One run on several processes (DistributedDataParallel): every process builds the same model and draws the
same epoch order, trains on its share of each global batch (`DeviceLoader.shard`, `FolderLoader.shard`), and
the gradients are averaged, so the run is the one-process run on the same global batch up to the order of
float sums; BN layers see their process's share (SyncBatchNorm on CUDA makes them see the whole batch).
Started by rethink/team.py for a run whose Runtime asks for several processes (or by any launcher that sets
the process group up, torchrun); every process evaluates the whole evaluation split, so each returns the
same history."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .mixing import hard_labels
from .runtime import Runtime
from .train import FUSED_DEVICES, Job, PlainStep, make_optimizer


class DDPStep(PlainStep):
    """PlainStep's step over the process group: each process's summed loss scaled by world / global batch,
    so the averaged gradient is the global batch's mean; the epoch sums are added over the processes."""

    @staticmethod
    def shard() -> tuple[int, int] | None:
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else None

    def __init__(self, jobs: Sequence[Job], device: torch.device, runtime: Runtime):
        (job,) = jobs
        if not dist.is_initialized():
            raise RuntimeError("DDPStep needs a process group (Runtime(processes=N) starts one)")
        # every process's BNs see the whole batch; in place (the caller's model is job.model), undone by finish()
        self.synced = sync_batchnorm(job.model) if device.type == "cuda" else {}
        self.model, self.bf16 = job.model, runtime.resolve()[2]
        self.world = dist.get_world_size()
        self.forward = DistributedDataParallel(job.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = make_optimizer(job.model, job.config, fused=device.type in FUSED_DEVICES)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=job.config.label_smoothing, reduction="sum")

    def __call__(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = xs[0], ys[0]
        n = torch.tensor(len(y), device=x.device, dtype=torch.float32)
        dist.all_reduce(n)  # the global batch (the last one may be short)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16):
            out = self.forward(x)
            total = self.criterion(out.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        (total * self.world / n).backward()
        return (total.detach() / len(y)).view(1), (out.detach().argmax(1) == hard_labels(y)).sum().view(1)

    def agree(self, stopped: bool) -> bool:
        """Whether any process stopped its run this epoch (rank 0's callbacks: a prune, a budget)."""
        flag = torch.tensor([int(stopped)], device=next(self.model.parameters()).device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def finish(self) -> None:
        plain_batchnorm(self.model, self.synced)

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        """An epoch sum over every process (train loss × images, correct predictions)."""
        t = t.clone()
        dist.all_reduce(t)
        return t


def sync_batchnorm(model: nn.Module) -> dict[str, type]:
    """convert_sync_batchnorm in place (the model's children; its parameters are the same objects), each
    converted module tagged with its first class (`plain_kind`); returns their names and classes, for
    `plain_batchnorm` to undo it."""
    kinds = {n: type(m) for n, m in model.named_modules() if n and isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for name, child in model.named_children():
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    for name, cls in kinds.items():
        model.get_submodule(name).plain_kind = cls
    return kinds


def plain_kind(module: nn.Module) -> type:
    """A module's class, or the BatchNorm class a SyncBatchNorm stands in for during a distributed run."""
    return getattr(module, "plain_kind", type(module))


def plain_batchnorm(model: nn.Module, kinds: dict[str, type]) -> None:
    """Undo `sync_batchnorm` in place: each SyncBatchNorm becomes its first class again, holding the same
    parameter and buffer objects, in the same mode (what pruning and checkpoints expect)."""
    for name, cls in kinds.items():
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent)
        sync = getattr(owner, leaf)
        plain = cls(sync.num_features, sync.eps, sync.momentum, sync.affine, sync.track_running_stats, device="meta")
        for key, value in sync.named_parameters(recurse=False):
            setattr(plain, key, value)
        for key, value in sync.named_buffers(recurse=False):
            plain.register_buffer(key, value)
        setattr(owner, leaf, plain.train(sync.training))
