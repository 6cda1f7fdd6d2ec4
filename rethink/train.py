"""One training loop with callbacks (SGD, step/cosine schedules, device-resident data); returns a history.
The loop trains one run, or several runs together (a group) whose step one engine computes."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .augment import DeviceLoader
from .budget import PER_STEP_SCHEDULES, lr_at
from .config import TrainConfig, config_digest  # noqa: F401 (re-exported: they lived here first)
from .erasing import batch_eraser
from .errors import ConfigError  # noqa: F401 (re-exported)
from .history import Callback, EpochMetrics, History, NonFiniteLoss, StopTraining  # noqa: F401 (re-exported)
from .imagefolder import FolderLoader
from .mixing import batch_mixer, hard_labels
from .resume import restore
from .runtime import Runtime
from .splits import Split

FUSED_DEVICES = ("cpu", "cuda")  # where torch has fused SGD and AdamW kernels


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer; `fused` computes the same update in one kernel per step. SGD decays every
    weight (the paper's L2); AdamW decays only weights of two or more dimensions, as timm's recipes do (biases
    and norm scales are left alone), with beta1 = momentum."""
    if config.optimizer == "adamw":
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999), fused=fused or None)
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        fused=fused,
    )


def make_loaders(
    split: Split,
    config: TrainConfig,
    device: torch.device,
    channels_last: bool = False,
    like: tuple[DeviceLoader, DeviceLoader] | None = None,
) -> tuple[DeviceLoader, DeviceLoader]:
    """Train loader (augmented, shuffled) and eval loader, both normalized by training-set statistics;
    `like`: loaders of the same split whose device copy of the images these share."""
    if like is not None:
        train, evaluation = like
        return train.with_draws(config.batch_size, config.augment, True, config.seed), evaluation.with_draws(
            max(256, config.batch_size)
        )
    mean, std = split.train_stats
    if split.resolution:  # an image folder: decoded by DataLoader workers, batch by batch
        train = FolderLoader(
            split.x_train, split.y_train, mean, std, config.batch_size, split.resolution, config.augment,
            shuffle=True, seed=config.seed, device=device, channels_last=channels_last,
        )  # fmt: skip
        evaluation = FolderLoader(
            split.x_eval, split.y_eval, mean, std, max(256, config.batch_size), split.resolution,
            device=device, channels_last=channels_last,
        )  # fmt: skip
        return train, evaluation
    train = DeviceLoader(
        split.x_train,
        split.y_train,
        mean,
        std,
        config.batch_size,
        config.augment,
        shuffle=True,
        seed=config.seed,
        device=device,
        channels_last=channels_last,
        resize=split.resize,
    )
    evaluation = DeviceLoader(
        split.x_eval, split.y_eval, mean, std, max(256, config.batch_size), device=device,
        channels_last=channels_last, resize=split.resize,
    )  # fmt: skip
    return train, evaluation


def evaluate(model: nn.Module, loader: DeviceLoader, bf16: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a loader, in eval mode; one host sync."""
    model.eval()
    loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    with torch.no_grad(), torch.autocast(loader.device.type, torch.bfloat16, enabled=bf16):
        for x, y in loader.epoch(0):
            out = model(x).float()
            loss += nn.functional.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    n = len(loader.y)
    return float(loss) / n, float(correct) / n


@dataclass(eq=False)
class Job:
    """One run to train: the model (trained in place), its recipe and its callbacks."""

    model: nn.Module
    config: TrainConfig
    callbacks: Sequence[Callback] = ()


class PlainStep:
    """The step of one model: forward (compiled when asked), cross-entropy, backward, the fused optimizer."""

    def __init__(self, jobs: Sequence[Job], device: torch.device, runtime: Runtime):
        (job,) = jobs
        self.model, self.bf16 = job.model, runtime.resolve()[2]
        self.forward = runtime.compiled(job.model, device)
        self.optimizer = make_optimizer(job.model, job.config, fused=device.type in FUSED_DEVICES)  # ~2x on CPU
        self.criterion = nn.CrossEntropyLoss(label_smoothing=job.config.label_smoothing)

    def set_lr(self, lrs: Sequence[float]) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[0]

    def train_mode(self) -> None:
        self.model.train()

    def __call__(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one batch per run; each run's mean loss and correct count (on the device)."""
        x, y = xs[0], ys[0]
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16):
            out = self.forward(x)
            loss = self.criterion(out.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach().view(1), (out.detach().argmax(1) == hard_labels(y)).sum().view(1)

    def step(self) -> None:
        self.optimizer.step()

    def stop(self, k: int) -> None: ...

    def finish(self) -> None: ...


def train_jobs(
    jobs: Sequence[Job],
    split: Split,
    runtime: Runtime = Runtime(),
    eval_final_only: bool = False,
    engine=PlainStep,
    on_done: Callable[[int, History | BaseException], None] | None = None,
    resume: dict | None = None,
) -> list[History | BaseException]:
    """Train `jobs` epoch by epoch, each on its own batches (its seed's order and augmentation) and with its
    own callbacks, evaluating on split.eval after every epoch (or only after the last: a test set is scored
    once). `engine(jobs, device, runtime)` computes one step of them all. A job whose loss stops being finite
    (NonFiniteLoss) or whose callback stops it (StopTraining) ends there and the others go on; its entry, and
    what `on_done(k, entry)` is told when job k ends, is the exception or its History. `resume`: a snapshot
    (rethink.resume) of the one job's run, continued from the epoch after it. With `runtime.processes` > 1
    the run trains on that many processes, this one rank 0 (rethink/team.py)."""
    if runtime.processes > 1 and engine is PlainStep:
        from .team import lead  # imports this module

        return lead(jobs, split, runtime, eval_final_only, on_done, resume)
    device, channels_last, bf16 = runtime.resolve()
    for job in jobs:
        job.model.to(device)
        if channels_last:
            job.model.to(memory_format=torch.channels_last)
    loaders: list[tuple[DeviceLoader, DeviceLoader]] = []
    for job in jobs:  # one copy of the images on the device for the whole group
        loaders.append(make_loaders(split, job.config, device, channels_last, loaders[0] if loaders else None))
    epochs, steps = jobs[0].config.epochs, len(loaders[0][0])
    if shard := getattr(engine, "shard", lambda: None)():  # a distributed run: this process's share of batches
        loaders[0][0].shard = shard
    step = engine(jobs, device, runtime)
    mixers = [batch_mixer(j.config.mixup, j.config.cutmix, split.num_classes, j.config.seed) for j in jobs]
    erasers = [batch_eraser(j.config.erasing, j.config.seed, shard[0] if shard else 0) for j in jobs]
    histories = [History(eval_name=split.eval_name) for _ in jobs]
    results: list[History | BaseException] = list(histories)
    active = list(range(len(jobs)))
    first = 0
    if resume is not None:
        if len(jobs) != 1:
            raise ValueError("a snapshot resumes one run, not a group")
        first = restore(resume, jobs[0].model, step.optimizer, histories[0])

    def end(k: int, outcome: History | BaseException) -> None:
        active.remove(k)
        step.stop(k)
        results[k] = outcome
        for cb in jobs[k].callbacks:
            cb.on_train_end(histories[k])
        if on_done:
            on_done(k, outcome)

    try:
        for k in active:
            for cb in jobs[k].callbacks:
                cb.on_train_start(jobs[k].model, step.optimizer)
        for epoch in range(first, epochs):
            configs = [job.config for job in jobs]
            lrs = [lr_at(epoch, c.epochs, c.lr, c.schedule, c.milestones, c.gamma, 0, steps) for c in configs]
            per_step = [c.schedule in PER_STEP_SCHEDULES for c in configs]
            step.set_lr(lrs)
            step.train_mode()
            start = time.perf_counter()
            loss_sum = torch.zeros(len(jobs), device=device)
            correct = torch.zeros(len(jobs), device=device, dtype=torch.long)
            mixes = [m.epoch(epoch, steps) if m else None for m in mixers]
            for i, batches in enumerate(zip(*(train.epoch(epoch) for train, _ in loaders), strict=True)):
                if any(per_step):
                    step.set_lr(
                        [lr_at(epoch, c.epochs, c.lr, c.schedule, step=i, steps_per_epoch=steps) if p else lr
                         for c, p, lr in zip(configs, per_step, lrs, strict=True)]
                    )  # fmt: skip
                xs, ys = [b[0] for b in batches], [b[1] for b in batches]
                for k, e in enumerate(erasers):
                    if e:
                        xs[k] = e(xs[k], epoch, i)
                for k, m in enumerate(mixers):
                    if m:
                        xs[k], ys[k] = m(xs[k], ys[k], mixes[k], i)
                losses, hits = step(xs, ys)
                for k in active:
                    for cb in jobs[k].callbacks:
                        cb.after_backward(jobs[k].model)
                step.step()
                for k in active:
                    for cb in jobs[k].callbacks:
                        cb.after_step(jobs[k].model)
                loss_sum += losses * len(ys[0])
                correct += hits
            for k in active:
                for cb in jobs[k].callbacks:
                    cb.after_epoch_train(jobs[k].model)
            if reduce := getattr(step, "reduce", None):  # a distributed run: the sums of every process
                loss_sum, correct = reduce(loss_sum), reduce(correct)
            n = loaders[0][0].num_samples
            train_losses = [s / n for s in loss_sum.tolist()]  # the epoch's one host sync
            train_hits = correct.tolist()
            seconds = time.perf_counter() - start
            for k in list(active):
                history = histories[k]
                history.images_seen += n
                if not math.isfinite(train_losses[k]):
                    end(k, NonFiniteLoss(epoch, train_losses[k]))
                    continue
                if eval_final_only and epoch < epochs - 1:
                    eval_loss = eval_acc = math.nan
                else:
                    eval_loss, eval_acc = evaluate(jobs[k].model, loaders[k][1], bf16)
                metrics = EpochMetrics(
                    epoch, lrs[k], train_losses[k], train_hits[k] / n, eval_loss, eval_acc, n / seconds, seconds
                )
                history.epochs.append(metrics)
                try:
                    for cb in jobs[k].callbacks:
                        cb.on_epoch_end(metrics, jobs[k].model)
                except StopTraining:
                    history.stopped_early = True
                    end(k, history)
            if (agree := getattr(step, "agree", None)) and agree(not active) and active:  # rank 0 stopped it
                histories[0].stopped_early = True
                end(0, histories[0])
            if not active:
                break
        for k in list(active):
            end(k, histories[k])
    finally:
        step.finish()
        for k in active:  # stopped by an exception that is not one job's outcome (a signal, a bug)
            for cb in jobs[k].callbacks:
                cb.on_train_end(histories[k])
    return results


def train(
    model: nn.Module,
    split: Split,
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    runtime: Runtime = Runtime(),
    eval_final_only: bool = False,
    resume: dict | None = None,
) -> History:
    """Train `model` in place on split.train, evaluating on split.eval after every epoch (or only after
    the last one: a test set is scored once); from a snapshot's next epoch with `resume`."""
    (outcome,) = train_jobs([Job(model, config, list(callbacks))], split, runtime, eval_final_only, resume=resume)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
