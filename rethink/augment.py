"""Batched augmentation on the device and the device-resident loader: one split kept on the device as uint8,
every random choice of an epoch drawn on the CPU from (seed, epoch), so the same seed gives the same batches
on any device."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError

AUGMENTATIONS = ("none", "flip", "crop-flip", "crop-flip-cutout")


def check_augmentation(policy: str) -> str:
    if policy not in AUGMENTATIONS:
        raise DataError(f"unknown augmentation {policy!r}; valid names: {', '.join(AUGMENTATIONS)}")
    return policy


def default_pad(size: int) -> int:
    """The paper's pad 4 on 32×32 images, scaled with the image size (1 on 8×8 digits)."""
    return max(1, round(size / 8))


@dataclass(frozen=True)
class EpochDraws:
    """All random choices of one epoch, drawn on the CPU from (seed, epoch): identical on any device."""

    order: torch.Tensor  # permutation of the sample indices
    flip: torch.Tensor  # bool per sample, in `order`
    shift: torch.Tensor  # (N, 2) crop offsets in [0, 2*pad], in `order`
    cutout: torch.Tensor  # (N, 2) cutout centres, in `order`


def draw_epoch(n: int, size: int, seed: int, epoch: int, shuffle: bool, pad: int) -> EpochDraws:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    flip = torch.rand(n, generator=g) < 0.5
    shift = torch.randint(0, 2 * pad + 1, (n, 2), generator=g)
    cutout = torch.randint(0, size, (n, 2), generator=g)
    return EpochDraws(order, flip, shift, cutout)


def random_crop(x: torch.Tensor, shift: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by `pad` and crop back to the input size at per-sample offsets (torchvision's RandomCrop)."""
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (shift[:, 0:1] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (shift[:, 1:2] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return xp[batch, chan, rows, cols]


def cutout_mask(centres: torch.Tensor, size: int, hole: int) -> torch.Tensor:
    """(N, 1, size, size) mask that zeroes a hole×hole square (clipped at the border) around each centre."""
    ar = torch.arange(size, device=centres.device).view(1, -1)
    lo = centres - hole // 2
    lo_r, lo_c = lo[:, 0:1], lo[:, 1:2]
    inside_r = (ar >= lo_r) & (ar < lo_r + hole)
    inside_c = (ar >= lo_c) & (ar < lo_c + hole)
    hole_mask = inside_r[:, :, None] & inside_c[:, None, :]
    return (~hole_mask).unsqueeze(1)


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images N×C×H×W resized to size×size: bilinear, antialiased when shrinking (as torchvision's Resize)."""
    return torch.nn.functional.interpolate(x, (size, size), mode="bilinear", antialias=size < x.shape[-1])


class DeviceLoader:
    """Keeps one split on the device as a uint8 tensor and yields normalized, augmented batches.

    Augmentation runs batched on the device; the random draws come from (seed, epoch) so the same seed
    gives the same batches on any device. With `resize`, each batch is augmented at the images' own size and
    then resized to resize×resize (bilinear; antialiased when shrinking): the stored copy stays small.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        batch_size: int,
        augment: str = "none",
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        pad: int | None = None,
        channels_last: bool = False,
        resize: int = 0,
    ):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        self.mean = torch.as_tensor(mean, device=self.device).view(1, -1, 1, 1) * 255.0
        self.std = torch.as_tensor(std, device=self.device).view(1, -1, 1, 1) * 255.0
        self.batch_size, self.augment, self.shuffle = batch_size, check_augmentation(augment), shuffle
        self.size = int(self.x.shape[-1])
        pad = default_pad(self.size) if pad is None else pad
        self.drop_last, self.seed, self.pad, self.channels_last = drop_last, seed, pad, channels_last
        self.hole = max(1, self.size // 2)  # cutout 16×16 on 32×32 (DeVries & Taylor 2017)
        self.shard: tuple[int, int] | None = None  # (rank, world): yield only that share of each batch
        self.resize = 0 if resize == self.size else resize

    def with_draws(self, batch_size: int, augment: str = "none", shuffle: bool = False, seed: int = 0) -> DeviceLoader:
        """The same images on the device (not copied again), batched and drawn for another run."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        other = copy.copy(self)
        other.batch_size, other.augment, other.shuffle, other.seed = (
            batch_size,
            check_augmentation(augment),
            shuffle,
            seed,
        )
        return other

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.y)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        d = draw_epoch(n, self.size, self.seed, epoch, self.shuffle, self.pad)
        order = d.order.to(self.device, non_blocking=True)
        flip = d.flip.to(self.device, non_blocking=True)
        shift = d.shift.to(self.device, non_blocking=True)
        centres = d.cutout.to(self.device, non_blocking=True)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            if self.shard is not None:  # one process of a distributed run: its share of the global batch
                rank, world = self.shard
                sl = torch.arange(sl.start, sl.stop, device=self.device).tensor_split(world)[rank]
            idx = order[sl]
            xb = self.x[idx]
            if self.augment.startswith("crop"):
                xb = random_crop(xb, shift[sl], self.pad)
            if self.augment != "none":
                xb = torch.where(flip[sl].view(-1, 1, 1, 1), xb.flip(-1), xb)
            xb = (xb.float() - self.mean) / self.std
            if self.augment == "crop-flip-cutout":
                xb = xb * cutout_mask(centres[sl], self.size, self.hole)
            if self.resize:
                xb = resized(xb, self.resize)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, self.y[idx]

    __iter__ = None  # use .epoch(k): an epoch index is required for reproducible draws
