"""Random erasing (Zhong et al. 2020) over a training batch, as timm's RandomErasing does it in DeiT's and
ConvNeXt's recipes (`reprob`, mode "pixel"): each image, with probability p, has one box replaced by
standard-normal noise (the images are normalized, so noise of the data's own scale); the box covers a
uniform 2-33% of the image with a log-uniform aspect ratio in [0.3, 3.3], the first of 10 draws that fits.
Applied to the batch at the size the model sees, before mixup/CutMix (timm's order). Every draw, the noise
too, comes from (seed, epoch, batch) on the CPU: a run erases alike on any device and after a resume. In a
distributed run each process draws for its own share (rank in the seed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ERASE_STREAM = 104_729  # keeps these draws apart from the augmentation's and the mixing's
AREA = (0.02, 1 / 3)  # timm's min_area, max_area
LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))  # timm's min_aspect 0.3, max_aspect 1 / 0.3
ATTEMPTS = 10


@dataclass(frozen=True)
class BatchEraser:
    p: float  # probability that an image is erased
    seed: int
    rank: int = 0

    def boxes(self, epoch: int, i: int, n: int, h: int, w: int) -> np.ndarray:
        """(n, 4) boxes (top, left, height, width) of batch i; height 0 where an image is not erased."""
        rng = np.random.default_rng([self.seed, epoch, i, self.rank, ERASE_STREAM])
        erase = rng.random(n) < self.p
        area = rng.uniform(*AREA, (n, ATTEMPTS)) * h * w
        ratio = np.exp(rng.uniform(*LOG_RATIO, (n, ATTEMPTS)))
        eh = np.round(np.sqrt(area * ratio)).astype(int)
        ew = np.round(np.sqrt(area / ratio)).astype(int)
        fits = (eh < h) & (ew < w)
        first = fits.argmax(1)
        rows = np.arange(n)
        eh, ew = np.where(erase & fits.any(1), eh[rows, first], 0), ew[rows, first]
        top = (rng.random(n) * (h - eh + 1)).astype(int)
        left = (rng.random(n) * (w - ew + 1)).astype(int)
        return np.stack([top, left, eh, np.where(eh > 0, ew, 0)], 1)

    def __call__(self, x: torch.Tensor, epoch: int, i: int) -> torch.Tensor:
        """Batch i (N, C, H, W, normalized) with its boxes replaced by noise."""
        n, c, h, w = x.shape
        boxes = self.boxes(epoch, i, n, h, w)
        erased = np.nonzero(boxes[:, 2])[0]
        if not len(erased):
            return x
        g = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, epoch, i, self.rank]).integers(2**62)))
        sizes = [c * int(boxes[k, 2] * boxes[k, 3]) for k in erased]
        noise = torch.randn(sum(sizes), generator=g).to(x.device, x.dtype, non_blocking=True).split(sizes)
        x = x.clone()
        for k, values in zip(erased, noise, strict=True):
            t, left, eh, ew = (int(v) for v in boxes[k])
            x[k, :, t : t + eh, left : left + ew] = values.view(c, eh, ew)
        return x


def batch_eraser(p: float, seed: int, rank: int = 0) -> BatchEraser | None:
    return BatchEraser(p, seed, rank) if p else None
