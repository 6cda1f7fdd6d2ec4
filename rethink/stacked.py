"""The stacked step: N runs of one architecture trained as one computation (HFTA's horizontal fusion).

Each parameter and buffer is stacked across the runs into one [N, ...] tensor; one `torch.func.vmap`
over `functional_call` computes every run's forward (a conv becomes one grouped conv of N groups), and
BatchNorm updates each run's own running statistics in its slice of the stacked buffers. The loss is
the sum of the runs' mean losses, so each run's gradient is its own. One SGD update, torch.optim.SGD's
(coupled weight decay, momentum buffer started from the first gradient, optional Nesterov), runs over
the stacked tensors with a learning rate per run.

Each run keeps its own nn.Module: its parameters and buffers are views of its slice of the stacked
storage, so callbacks (masks, sparsity, SFP), evaluation and checkpoints see that run alone. When a run
ends, or the group does, its module gets tensors of its own again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from .mixing import hard_labels
from .runtime import Runtime
from .train import Callback, Job

SHARED_FIELDS = ("epochs", "batch_size", "momentum", "nesterov", "weight_decay", "label_smoothing", "mixup", "cutmix")


def stack_key(job: Job) -> tuple:
    """Jobs with equal keys can be stacked: the same tensors (names, shapes, dtypes) and step count, and
    one optimizer setting; lr, schedule, augmentation and seed may differ per run."""
    state = tuple((k, tuple(v.shape), v.dtype) for k, v in job.model.state_dict().items())
    if job.config.optimizer != "sgd":  # the stacked update is SGD's: any other optimizer trains alone
        return state, id(job)
    return state, tuple(getattr(job.config, f) for f in SHARED_FIELDS)


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return model.get_submodule(path) if path else model, leaf


def _uses_grads(jobs: Sequence[Job]) -> bool:
    """Whether a callback reads or changes gradients after backward (e.g. slimming's L1 on BN scales)."""
    return any(type(cb).after_backward is not Callback.after_backward for job in jobs for cb in job.callbacks)


class StackedStep:
    """The step of N same-shape runs as one computation (see the module's docstring)."""

    optimizer = None  # the update is this class's own, over the stacked tensors

    def __init__(self, jobs: Sequence[Job], device: torch.device, runtime: Runtime):
        if runtime.compile or len({stack_key(job) for job in jobs}) > 1:  # train_group never asks for either
            raise ValueError(
                "stacked runs need one architecture, the same epochs, batch size and optimizer, no compile"
            )
        self.models = [job.model for job in jobs]
        self.n, self.bf16 = len(jobs), runtime.resolve()[2]
        c = jobs[0].config
        self.momentum, self.nesterov, self.weight_decay = c.momentum, c.nesterov, c.weight_decay
        self.criterion = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        self.expose_grads = _uses_grads(jobs)
        first = self.models[0]
        self.param_names = [k for k, _ in first.named_parameters()]
        self.buffer_names = [k for k, _ in first.named_buffers()]
        with torch.no_grad():
            self.params = {
                k: torch.stack([m.get_parameter(k) for m in self.models]).requires_grad_() for k in self.param_names
            }
            self.buffers = {k: torch.stack([m.get_buffer(k) for m in self.models]) for k in self.buffer_names}
        for i in range(self.n):
            self._point(i, own=False)
        self.skeleton = copy.deepcopy(first).to("meta")
        self.momentum_buffers: dict[str, torch.Tensor] = {}  # SGD's, started from each tensor's first gradient
        self.live = [True] * self.n
        self.active = torch.ones(self.n, device=device)  # the loss weight of each run: 0 once it ended
        self.lrs = [0.0] * self.n
        self.lr_full: dict[str, torch.Tensor] | None = None  # per tensor, the lrs as [N, 1, ...], when they differ
        self.forward = torch.vmap(self._forward_one, in_dims=(0, 0, 0))

    def _point(self, i: int, own: bool) -> None:
        """Point run i's module at its slice of the stacked tensors, or (own) at a copy of it."""
        model = self.models[i]
        for k in self.param_names:
            owner, leaf = _owner(model, k)
            view = self.params[k].detach()[i]
            owner._parameters[leaf] = nn.Parameter(view.clone() if own else view)
        for k in self.buffer_names:
            owner, leaf = _owner(model, k)
            owner._buffers[leaf] = self.buffers[k][i].clone() if own else self.buffers[k][i]

    def _forward_one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.skeleton, (params, buffers), (x,))

    def set_lr(self, lrs: Sequence[float]) -> None:
        self.lrs = [lr if live else 0.0 for lr, live in zip(lrs, self.live, strict=True)]
        if len(set(self.lrs)) == 1:
            self.lr_full = None
            return
        # In each tensor's dtype (an fp32 lr would round 0.1 by 1.5e-8 on fp64 weights), viewed as [N, 1, ...].
        kinds = {(p.dtype, p.device) for p in self.params.values()}
        lrs = {(dtype, device): torch.tensor(self.lrs, dtype=dtype, device=device) for dtype, device in kinds}
        self.lr_full = {k: lrs[p.dtype, p.device].view(-1, *[1] * (p.dim() - 1)) for k, p in self.params.items()}

    def train_mode(self) -> None:
        self.skeleton.train()
        for m in self.models:
            m.train()

    def __call__(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = torch.stack(xs), torch.stack(ys)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16):
            out = self.forward(self.params, self.buffers, x).float()
        losses = torch.stack([self.criterion(out[i], y[i]) for i in range(self.n)])  # each as the plain step
        for p in self.params.values():
            p.grad = None
        (losses * self.active).sum().backward()
        if self.expose_grads:
            for i, model in enumerate(self.models):
                for k in self.param_names:
                    if (grad := self.params[k].grad) is not None:
                        model.get_parameter(k).grad = grad[i]
        return losses.detach(), (out.detach().argmax(-1) == hard_labels(y)).sum(1)

    @torch.no_grad()
    def step(self) -> None:
        """torch.optim.SGD's update (dampening 0) over the stacked tensors, one learning rate per run; a tensor
        without a gradient is left alone, as SGD leaves it."""
        names = [k for k, p in self.params.items() if p.grad is not None]
        params = [self.params[k] for k in names]
        grads = [p.grad for p in params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum:
            have = [i for i, k in enumerate(names) if k in self.momentum_buffers]
            if have:
                buffers = [self.momentum_buffers[names[i]] for i in have]
                torch._foreach_mul_(buffers, self.momentum)
                torch._foreach_add_(buffers, [grads[i] for i in have])
            for k, g in zip(names, grads, strict=True):
                if k not in self.momentum_buffers:
                    self.momentum_buffers[k] = g.clone()  # SGD's first step: the buffer is the gradient
            buffers = [self.momentum_buffers[k] for k in names]
            grads = torch._foreach_add(grads, buffers, alpha=self.momentum) if self.nesterov else buffers
        if self.lr_full is None:
            torch._foreach_add_(params, grads, alpha=-self.lrs[0])
        else:
            for k, p, g in zip(names, params, grads, strict=True):
                p.addcmul_(self.lr_full[k], g, value=-1)

    def stop(self, k: int) -> None:
        """Run k ended: its module keeps a copy of its tensors, and its slot trains no more."""
        self._point(k, own=True)
        self.live[k] = False
        self.active[k] = 0.0
        self.set_lr(self.lrs)

    def finish(self) -> None:
        for i in range(self.n):
            if self.live[i]:
                self._point(i, own=True)
                self.live[i] = False
