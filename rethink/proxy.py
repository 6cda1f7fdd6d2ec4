"""A cheaper version of a search split for the searched trials (a proxy): a seeded subset of its classes,
a lower resolution, or both. Confirmation and the final evaluation stay at full scale."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .splits import Split


def downsample(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 N×C×H×W images resized to size×size (bilinear with antialiasing, as a resize would)."""
    t = torch.nn.functional.interpolate(torch.from_numpy(x).float(), (size, size), mode="bilinear", antialias=True)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def proxy_classes(split: Split, classes: int | None, seed: int) -> np.ndarray:
    """The classes the proxy keeps: `classes` of those the training split has, drawn from `seed`; all with None."""
    present = np.unique(split.y_train)
    if classes is None or classes >= len(present):
        return present
    return np.sort(np.random.default_rng(seed).choice(present, classes, replace=False))


def proxy_split(split: Split, classes: int | None, resolution: int | None, seed: int) -> Split:
    """The split restricted to the proxy's classes (labels kept: the model keeps every output) and read at
    `resolution` (an image folder decodes at it; images in memory are downsampled, or resized on the device to
    it when the split resizes them and it is above their own size)."""
    keep = proxy_classes(split, classes, seed)
    tr, ev = np.isin(split.y_train, keep), np.isin(split.y_eval, keep)
    x_train, x_eval, res, resize = split.x_train[tr], split.x_eval[ev], split.resolution, split.resize
    if resolution is not None and split.resolution:
        res = resolution
    elif resolution is not None and resolution < x_train.shape[-1]:
        x_train, x_eval, resize = downsample(x_train, resolution), downsample(x_eval, resolution), 0
    elif resolution is not None and split.resize:
        resize = min(resolution, split.resize)
    return replace(
        split, x_train=x_train, y_train=split.y_train[tr], x_eval=x_eval, y_eval=split.y_eval[ev], resolution=res,
        resize=resize,
    )  # fmt: skip


def proxy_cost(split: Split, proxy: Split, size: int, epochs: float) -> float:
    """A proxy trial's share of a full-scale trial's training MACs: images × pixels × epochs."""
    side = proxy.resolution or proxy.resize or proxy.x_train.shape[-1]
    return len(proxy.y_train) / len(split.y_train) * (side / size) ** 2 * epochs
