"""A loaded dataset split for one run (train/validation for trials, train+validation/test for the final
evaluation, stratified and seeded) and the per-channel constants that normalize its batches."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from .data import SYNTHETIC, Dataset, split_resolution
from .errors import DataError
from .imagefolder import IMAGENET_MEAN_STD


@dataclass(frozen=True, eq=False)
class Split:
    """Train and evaluation arrays chosen for one run: train/val (trials) or train+val/test (final)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    num_classes: int
    eval_name: str  # "val" or "test"
    constants: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # fixed (mean, std), else the split's own
    resolution: int = 0  # an image folder's crop size (x holds paths); 0 for images in memory
    resize: int = 0  # images in memory resized on the device to this side; 0 keeps theirs

    @cached_property
    def train_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel (mean, std) that normalize every batch: fixed constants, or those of the training
        images, computed once per split."""
        if self.constants is not None:
            return tuple(np.asarray(c, dtype=np.float32) for c in self.constants)
        return channel_stats(self.x_train)


# Per-channel (mean, std) in [0, 1] units. "split": the training split's own statistics (rethink's default).
# "liu2019": the constants of the paper's l1-norm, slimming and weight-level code (CIFAR-10 and -100 alike).
# "he2018": those of the soft-filter-pruning code (125.3, 123.0, 113.9 / 63.0, 62.1, 66.7 on CIFAR-10).
# "imagenet": the official ImageNet code's (torchvision's) constants, for any dataset (image folders need fixed ones).
NORMALIZATIONS: dict[str, dict[str, tuple[tuple[float, ...], tuple[float, ...]]]] = {
    "split": {},
    "liu2019": {name: ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) for name in ("cifar10", "cifar100")},
    "he2018": {
        "cifar10": (tuple(v / 255 for v in (125.3, 123.0, 113.9)), tuple(v / 255 for v in (63.0, 62.1, 66.7))),
        "cifar100": (tuple(v / 255 for v in (129.3, 124.1, 112.4)), tuple(v / 255 for v in (68.2, 65.4, 70.4))),
    },
    "imagenet": {"*": IMAGENET_MEAN_STD},
}


def normalization(name: str, dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The fixed constants `name` gives `dataset`, or None for the split's own statistics."""
    if name not in NORMALIZATIONS:
        raise DataError(f"unknown normalization {name!r}; valid names: {', '.join(NORMALIZATIONS)}")
    if name == "split":
        return None
    if "*" in NORMALIZATIONS[name]:
        return NORMALIZATIONS[name]["*"]
    dataset = split_resolution(dataset)[0]
    stem = Path(dataset[4:]).stem if dataset.startswith("npz:") else dataset
    known = sorted(NORMALIZATIONS[name], key=len, reverse=True)  # cifar10-5k: a CIFAR-10 subset, CIFAR-10's constants
    match = next((k for k in known if stem == k or stem.startswith(f"{k}-")), None)
    if match is None:
        raise DataError(
            f"normalization {name!r} has constants for {', '.join(NORMALIZATIONS[name])} only, not {dataset!r}; "
            f'use normalize = "split"'
        )
    return NORMALIZATIONS[name][match]


def normalized(split: Split, name: str, dataset: str) -> Split:
    """`split` normalized by the named constants (see NORMALIZATIONS)."""
    constants = normalization(name, dataset)
    if constants is None and split.resolution:
        raise DataError(
            f'normalize = "split" computes statistics of images in memory; the image folder {dataset!r} needs '
            f'fixed constants: set normalize = "imagenet"'
        )
    return replace(split, constants=constants)


def train_val_split(ds: Dataset, val_fraction: float = 0.1, seed: int = 0) -> Split:
    """A stratified validation split carved from the training set; the test set is not touched."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    counts = np.bincount(ds.y_train, minlength=ds.num_classes)
    if ds.name.startswith(SYNTHETIC):  # smoke data: only the classes its labels use are split
        counts = counts[counts > 0]
    n_val = int(np.ceil(val_fraction * len(ds.y_train)))
    if counts.min() < 2 or n_val < len(counts) or len(ds.y_train) - n_val < len(counts):
        raise DataError(
            f"{ds.name}: the stratified validation split (val_fraction {val_fraction}) needs every class twice "
            f"in training and at least one image per class on each side: class {int(counts.argmin())} has "
            f"{int(counts.min())} image(s), validation would get {n_val} for {len(counts)} classes; "
            f"add images or change val_fraction"
        )
    from sklearn.model_selection import train_test_split  # imported here: a --dry-run never splits (1 s saved)

    idx_tr, idx_val = train_test_split(
        np.arange(len(ds.y_train)), test_size=val_fraction, stratify=ds.y_train, random_state=seed
    )
    x, y = ds.x_train, ds.y_train
    return Split(
        x[idx_tr], y[idx_tr], x[idx_val], y[idx_val], ds.num_classes, "val", resolution=ds.resolution, resize=ds.resize
    )


def train_test(ds: Dataset) -> Split:
    """The whole training set (train+val) against the test set: for final evaluation only."""
    return Split(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.num_classes, "test", resolution=ds.resolution, resize=ds.resize
    )


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    xf = x.astype(np.float64) / 255.0
    mean = xf.mean(axis=(0, 2, 3))
    std = xf.std(axis=(0, 2, 3))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)
