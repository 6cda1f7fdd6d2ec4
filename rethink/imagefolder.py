"""Image folders (the ImageNet-1k layout: `train/CLASS/*.JPEG`, `val/CLASS/*.JPEG`) as a dataset, and a loader
that decodes and augments in DataLoader workers, never holding the images in memory.

A folder dataset's x arrays hold file paths (bytes) instead of pixels, so the stratified splits work as for
arrays. Augmentation names keep their meaning with the ImageNet crop: "crop" is RandomResizedCrop (scale
0.08-1, ratio 3/4-4/3) to the resolution, "none"/"flip" and evaluation resize the short side to 256/224 of
it and take the centre crop (the official code's transforms). Every random choice comes from (seed, epoch,
image), so a run's batches are the same with any number of workers."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from .errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the official code's normalisation
RESIZE_RATIO = 256 / 224  # evaluation: resize the short side to 256, centre-crop 224
RRC_SCALE, RRC_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
FOLDER_UNSUPPORTED = "crop-flip-cutout"  # the augmentation image folders do not offer


class FolderError(UserError):
    """An image folder with a wrong layout, classes that differ between splits, or an unreadable image."""


@dataclass(frozen=True)
class FolderImages:
    """The files of an image folder: absolute paths (bytes) and labels of `train/` and `val/`, sorted."""

    root: Path
    classes: tuple[str, ...]
    train: np.ndarray
    y_train: np.ndarray
    val: np.ndarray
    y_val: np.ndarray


def _images(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.path for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _class_dirs(split: Path) -> list[str]:
    with os.scandir(split) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def scan_folder(root: str | Path) -> FolderImages:
    """Index `root/train` and `root/val`; a wrong layout is a one-line error naming the path."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FolderError(f"image folder {root} not found; give imagefolder:PATH with train/ and val/ class folders")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FolderError(f"{root / split}: missing; an image folder needs train/CLASS/*.jpg and val/CLASS/*.jpg")
    classes = _class_dirs(root / "train")
    if not classes:
        raise FolderError(f"{root / 'train'}: no class folders; put each class's images in train/CLASS/")
    val_classes = _class_dirs(root / "val")
    if val_classes != classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        raise FolderError(
            f"{root}: train/ and val/ have different classes (only in train: {only_train[:3]}, only in val: "
            f"{only_val[:3]}); the same class folders must be in both (ImageNet's val/ sorted into class folders)"
        )
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "val"):
        paths, labels = [], []
        for k, name in enumerate(classes):
            found = _images(root / split / name)
            if not found and split == "train":
                raise FolderError(f"{root / split / name}: no images ({', '.join(IMAGE_EXTENSIONS)}); add some")
            paths += found
            labels += [k] * len(found)
        if not paths:
            raise FolderError(f"{root / split}: no images in any class folder")
        arrays[split] = (np.array([os.fsencode(p) for p in paths]), np.array(labels, dtype=np.int64))
    return FolderImages(root, tuple(classes), *arrays["train"], *arrays["val"])


def has_at_most(root: str | Path, limit: int) -> bool:
    """Whether `root/train` holds at most `limit` images (counting stops past it: cheap on ImageNet)."""
    train, n = Path(root) / "train", 0
    if not train.is_dir():
        return False
    for name in _class_dirs(train):
        with os.scandir(train / name) as it:
            n += sum(1 for e in it if e.name.lower().endswith(IMAGE_EXTENSIONS))
        if n > limit:
            return False
    return True


def _rrc_box(h: int, w: int, g: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width), torchvision's algorithm with a seeded generator."""
    area = h * w
    log_ratio = (math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]))
    for _ in range(10):
        u = torch.rand(2, generator=g).tolist()
        target = area * (RRC_SCALE[0] + u[0] * (RRC_SCALE[1] - RRC_SCALE[0]))
        ratio = math.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            return top, left, ch, cw
    ratio = w / h  # fallback: the centre crop of the allowed ratio
    if ratio < RRC_RATIO[0]:
        cw, ch = w, round(w / RRC_RATIO[0])
    elif ratio > RRC_RATIO[1]:
        ch, cw = h, round(h * RRC_RATIO[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class _Decoded(torch.utils.data.Dataset):
    """Decode and transform one image to uint8 C×S×S; an unreadable one comes back with label -1 - index, so
    the loader can name its path in a one-line error (a worker's own exception arrives as a traceback)."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, size: int, augment: str, seed: int):
        self.paths, self.labels, self.size, self.augment, self.seed = paths, labels, size, augment, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        from torchvision.io import ImageReadMode, decode_image, read_file
        from torchvision.transforms.v2 import functional as F

        i, epoch = item
        try:
            img = decode_image(read_file(os.fsdecode(self.paths[i])), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError):
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), -1 - i
        g = torch.Generator().manual_seed(hash((self.seed, epoch, i)) % 2**63)  # ints hash alike in any process
        if self.augment.startswith("crop"):
            top, left, h, w = _rrc_box(img.shape[-2], img.shape[-1], g)
            img = F.resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)
        else:
            img = F.center_crop(F.resize(img, [round(self.size * RESIZE_RATIO)], antialias=True), [self.size] * 2)
        if self.augment != "none" and bool(torch.rand(1, generator=g) < 0.5):
            img = F.horizontal_flip(img)
        return img.contiguous(), int(self.labels[i])


class _EpochBatches(torch.utils.data.Sampler):
    """Batches of (index, epoch) pairs in the epoch's order; `epoch` is set before each pass (persistent
    workers see it through the indices, not through shared state); with `shard` = (rank, world), only that
    process's share of each global batch."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool, drop_last: bool):
        self.n, self.batch_size, self.seed, self.shuffle, self.drop_last = n, batch_size, seed, shuffle, drop_last
        self.epoch, self.shard = 0, None

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        for b in range(len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.shard is not None:
                batch = batch.tensor_split(self.shard[1])[self.shard[0]]
            yield [(int(i), self.epoch) for i in batch]


def default_workers() -> int:
    """Decoding processes per loader: the cores this process may use, at most 8 (env RETHINK_DATA_WORKERS)."""
    if "RETHINK_DATA_WORKERS" in os.environ:
        return max(0, int(os.environ["RETHINK_DATA_WORKERS"]))
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class FolderLoader:
    """The DeviceLoader interface over image files: `epoch(k)` yields normalized batches on the device,
    decoded and augmented by `workers` processes (0: in this process)."""

    def __init__(
        self,
        paths: np.ndarray,
        y: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        batch_size: int,
        size: int,
        augment: str = "none",
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
        workers: int | None = None,
    ):
        if batch_size < 1:
            raise FolderError(f"batch_size must be >= 1, got {batch_size}")
        if augment == FOLDER_UNSUPPORTED:
            raise FolderError(f"augment {augment!r} is not available on image folders; use 'crop-flip'")
        self.paths, self.labels = paths, np.asarray(y, dtype=np.int64)
        self.y = torch.from_numpy(self.labels)
        self.device = torch.device(device)
        self.mean = torch.as_tensor(mean, device=self.device).view(1, -1, 1, 1) * 255.0
        self.std = torch.as_tensor(std, device=self.device).view(1, -1, 1, 1) * 255.0
        self.batch_size, self.size, self.augment, self.shuffle = batch_size, size, augment, shuffle
        self.drop_last, self.seed, self.channels_last = drop_last, seed, channels_last
        self.workers = default_workers() if workers is None else workers
        self._loader: torch.utils.data.DataLoader | None = None
        self.shard: tuple[int, int] | None = None  # (rank, world): yield only that share of each batch

    def with_draws(self, batch_size: int, augment: str = "none", shuffle: bool = False, seed: int = 0) -> FolderLoader:
        return FolderLoader(
            self.paths, self.labels, self.mean.flatten().cpu() / 255, self.std.flatten().cpu() / 255, batch_size,
            self.size, augment, shuffle, self.drop_last, seed, self.device, self.channels_last, self.workers,
        )  # fmt: skip

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def _data_loader(self) -> torch.utils.data.DataLoader:
        if self._loader is None:
            images = _Decoded(self.paths, self.labels, self.size, self.augment, self.seed)
            batches = _EpochBatches(len(self.labels), self.batch_size, self.seed, self.shuffle, self.drop_last)
            workers = min(self.workers, len(self))
            self._loader = torch.utils.data.DataLoader(
                images,
                batch_sampler=batches,
                num_workers=workers,
                persistent_workers=workers > 0,
                pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if workers > 0 else None,
            )
        return self._loader

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = self._data_loader()
        loader.batch_sampler.epoch, loader.batch_sampler.shard = epoch, self.shard
        for xb, yb in loader:
            if bool((yb < 0).any()):
                bad = os.fsdecode(self.paths[-1 - int(yb[yb < 0][0])])
                raise FolderError(f"{bad}: not a readable image; remove or replace the file")
            xb = xb.to(self.device, non_blocking=True)
            xb = (xb.float() - self.mean) / self.std
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb.to(self.device, non_blocking=True)

    __iter__ = None  # use .epoch(k), as DeviceLoader
