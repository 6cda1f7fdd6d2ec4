"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) over a training batch, as timm's Mixup does them in
its batch mode: each batch is mixed with itself reversed, one λ ~ Beta(α, α) per batch, and with both on
each batch takes one of the two at even odds. Every draw of an epoch comes from (seed, epoch) on the CPU, so
a run mixes the same way on any device, beside any other run, and after a resume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MIX_STREAM = 7_919  # keeps the mixing draws apart from the augmentation's, which use (seed, epoch) too


@dataclass(frozen=True)
class EpochMix:
    """One epoch's draws, per batch: λ, whether it is CutMix, and the box centre as fractions of the side."""

    lam: np.ndarray
    cut: np.ndarray
    centre: np.ndarray  # (steps, 2) in [0, 1)


@dataclass(frozen=True)
class BatchMixer:
    mixup: float  # Beta α of mixup; 0: off
    cutmix: float  # Beta α of CutMix; 0: off
    num_classes: int
    seed: int

    def epoch(self, epoch: int, steps: int) -> EpochMix:
        rng = np.random.default_rng([self.seed, epoch, MIX_STREAM])
        cut = rng.random(steps) < 0.5 if self.mixup and self.cutmix else np.full(steps, bool(self.cutmix))
        lam_mix = rng.beta(self.mixup, self.mixup, steps) if self.mixup else np.ones(steps)
        lam_cut = rng.beta(self.cutmix, self.cutmix, steps) if self.cutmix else np.ones(steps)
        return EpochMix(np.where(cut, lam_cut, lam_mix), cut, rng.random((steps, 2)))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, draws: EpochMix, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch i mixed with its reverse; the targets as class probabilities (λ on y, 1 − λ on y reversed)."""
        lam = float(draws.lam[i])
        if draws.cut[i]:
            x, lam = cutmix(x, lam, draws.centre[i])
        else:
            x = x * lam + x.flip(0) * (1 - lam)
        one_hot = torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        return x, one_hot * lam + one_hot.flip(0) * (1 - lam)


def cutmix(x: torch.Tensor, lam: float, centre: np.ndarray) -> tuple[torch.Tensor, float]:
    """Paste a box of the reversed batch, of area (1 − λ) of the image before clipping at the border; λ is
    then what the box left of each image (timm's correct_lam)."""
    h, w = x.shape[-2:]
    ratio = np.sqrt(1 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(centre[0] * h), int(centre[1] * w)
    y1, y2 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
    x1, x2 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
    x = x.clone()
    x[..., y1:y2, x1:x2] = x.flip(0)[..., y1:y2, x1:x2]
    return x, 1 - float((y2 - y1) * (x2 - x1)) / (h * w)


def batch_mixer(mixup: float, cutmix_: float, num_classes: int, seed: int) -> BatchMixer | None:
    return BatchMixer(mixup, cutmix_, num_classes, seed) if mixup or cutmix_ else None


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """The labels a batch's accuracy counts: mixed targets' larger share."""
    return y.argmax(-1) if y.is_floating_point() else y
