"""One run on several processes (DistributedDataParallel): every process builds the same model and draws the
same epoch order, trains on its share of each global batch (`DeviceLoader.shard`, `FolderLoader.shard`), and
the gradients are averaged, so the run is the one-process run on the same global batch up to the order of
float sums; BN layers see their process's share (SyncBatchNorm on CUDA makes them see the whole batch).
Started by torchrun (or any launcher that sets the process group up); every process evaluates the whole
evaluation split, so each returns the same history."""

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
            raise RuntimeError("DDPStep needs a process group (start the run with torchrun)")
        if device.type == "cuda":
            job.model = nn.SyncBatchNorm.convert_sync_batchnorm(job.model)
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

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        """An epoch sum over every process (train loss × images, correct predictions)."""
        t = t.clone()
        dist.all_reduce(t)
        return t
