"""The reference pipeline the fast loop is measured and checked against: the paper's way of training.

A torchvision DataLoader over PIL images with per-sample transforms (pad-4 random crop, horizontal flip,
ToTensor, Normalize), NCHW float32, and `.item()` after every step. Its random crops and flips are taken
from the same per-epoch draws as `DeviceLoader`, so for one seed both paths see the same batches.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import EpochDraws, default_pad, draw_epoch
from .budget import PER_STEP_SCHEDULES, lr_at
from .errors import ConfigError
from .splits import Split, channel_stats
from .train import EpochMetrics, History, NonFiniteLoss, TrainConfig, make_optimizer


class _EpochOrder(Sampler[int]):
    def __init__(self, draws: EpochDraws):
        self.draws = draws

    def __iter__(self):
        return iter(range(len(self.draws.order)))  # positions; the dataset maps them through the draws

    def __len__(self) -> int:
        return len(self.draws.order)


class PerSampleDataset(Dataset):
    """PIL images transformed one at a time with torchvision's functional ops."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: str, pad: int | None = None):
        self.images = [
            Image.fromarray(im.transpose(1, 2, 0).squeeze(-1) if im.shape[0] == 1 else im.transpose(1, 2, 0))
            for im in x
        ]
        self.y = torch.as_tensor(y, dtype=torch.long)
        mean, std = channel_stats(x)
        self.mean, self.std = mean.tolist(), std.tolist()
        self.augment, self.size = augment, x.shape[-1]
        self.pad = default_pad(self.size) if pad is None else pad
        self.draws: EpochDraws | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, position: int):
        d = self.draws
        i = int(d.order[position])
        img = self.images[i]
        if self.augment.startswith("crop"):
            img = TF.pad(img, self.pad, fill=0)
            top, left = (int(v) for v in d.shift[position])
            img = TF.crop(img, top, left, self.size, self.size)
        if self.augment != "none" and bool(d.flip[position]):
            img = TF.hflip(img)
        t = TF.normalize(TF.to_tensor(img), self.mean, self.std)
        if self.augment == "crop-flip-cutout":
            hole = max(1, self.size // 2)
            r, c = (int(v) - hole // 2 for v in d.cutout[position])
            t[:, max(0, r) : max(0, r + hole), max(0, c) : max(0, c + hole)] = 0
        return t, self.y[i]


def reference_loader(split: Split, config: TrainConfig, epoch: int, num_workers: int = 0) -> DataLoader:
    ds = PerSampleDataset(split.x_train, split.y_train, config.augment)
    ds.draws = draw_epoch(len(ds), ds.size, config.seed, epoch, shuffle=True, pad=ds.pad)
    return DataLoader(ds, batch_size=config.batch_size, sampler=_EpochOrder(ds.draws), num_workers=num_workers)


def reference_train(
    model: nn.Module, split: Split, config: TrainConfig, num_workers: int = 0, device: str = "cpu"
) -> History:
    """The paper-style loop: per-sample transforms in DataLoader workers, fp32 NCHW, batches copied to the
    device (pinned memory on CUDA), and a host sync every step."""
    if config.mixup or config.cutmix:
        raise ConfigError("the reference loop is the paper's: it has no mixup or CutMix (set both to 0)")
    if config.erasing:
        raise ConfigError("the reference loop is the paper's: it has no random erasing (erasing = 0)")
    if split.resize:
        raise ConfigError(f"the reference loop is the paper's: it trains at the images' size, not @{split.resize}")
    model.to(device)
    optimizer = make_optimizer(model, config)  # one tensor at a time, as the paper's code did
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = History()
    ds = PerSampleDataset(split.x_train, split.y_train, config.augment)
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, config.epochs, config.lr, config.schedule, config.milestones, config.gamma)
        ds.draws = draw_epoch(len(ds), ds.size, config.seed, epoch, shuffle=True, pad=ds.pad)
        loader = DataLoader(
            ds,
            batch_size=config.batch_size,
            sampler=_EpochOrder(ds.draws),
            num_workers=num_workers,
            pin_memory=device.startswith("cuda"),
        )
        model.train()
        start, loss_sum, correct, n = time.perf_counter(), 0.0, 0, 0
        for i, (x, y) in enumerate(loader):
            if config.schedule in PER_STEP_SCHEDULES:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(
                        epoch, config.epochs, config.lr, config.schedule, step=i, steps_per_epoch=len(loader)
                    )
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = criterion(out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)  # the per-step host sync of the reference
            correct += int((out.argmax(1) == y).sum().item())
            n += len(y)
        seconds = time.perf_counter() - start
        if not math.isfinite(loss_sum):
            raise NonFiniteLoss(epoch, loss_sum)
        history.images_seen += n
        history.epochs.append(
            EpochMetrics(
                epoch,
                optimizer.param_groups[0]["lr"],
                loss_sum / n,
                correct / n,
                math.nan,
                math.nan,
                n / seconds,
                seconds,
            )
        )
    return history
