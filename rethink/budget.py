"""Epoch budgets of the arms (Scratch-E, Scratch-B) and learning-rate schedules as fractions of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence

PAPER_MILESTONES = (0.5, 0.75)  # lr ×0.1 at 50% and 75% of training
SCHEDULES = ("step", "cosine", "constant", "warmup-cosine")
PER_STEP_SCHEDULES = ("warmup-cosine",)  # the others change the lr once per epoch, as the paper's code does
WARMUP_FRACTION = 0.05  # warmup-cosine: linear warm-up over the first 5% of the steps (the 1-cycle family)


def scratch_b_epochs(base_epochs: int, base_flops: float, pruned_flops: float) -> int:
    """Scratch-B: the epochs that give the pruned model the base model's training FLOPs (paper: int())."""
    if pruned_flops <= 0 or base_flops <= 0:
        raise ValueError(f"FLOPs must be positive, got base={base_flops}, pruned={pruned_flops}")
    return int(base_epochs * base_flops / pruned_flops)


def milestone_epochs(epochs: int, milestones: Sequence[float] = PAPER_MILESTONES) -> list[int]:
    """Epoch indices where a step schedule decays: int(fraction × epochs), as in the paper's code."""
    return [max(1, int(m * epochs)) for m in milestones]  # never a decay before the first epoch


def lr_at(
    epoch: int,
    epochs: int,
    base_lr: float,
    schedule: str = "step",
    milestones: Sequence[float] = PAPER_MILESTONES,
    gamma: float = 0.1,
    step: int = 0,
    steps_per_epoch: int = 1,
) -> float:
    """Learning rate of 0-based `epoch` (and, for per-step schedules, its `step`) in a run of `epochs`."""
    if schedule == "step":
        return base_lr * gamma ** sum(epoch >= m for m in milestone_epochs(epochs, milestones))
    if schedule == "cosine":
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "constant":
        return base_lr
    if schedule == "warmup-cosine":
        total = epochs * steps_per_epoch
        s = epoch * steps_per_epoch + step
        warm = max(1, math.ceil(WARMUP_FRACTION * total))
        if s < warm:
            return base_lr * (s + 1) / warm
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * (s - warm) / max(1, total - warm)))
    raise ValueError(f"unknown lr schedule {schedule!r}; valid names: {', '.join(SCHEDULES)}")
