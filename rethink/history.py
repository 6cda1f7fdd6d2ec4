"""What the training loop records and lets others hook into: per-epoch metrics, the history of a run,
the callbacks' hooks, and the two ways a run ends early."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, value: float):
        super().__init__(f"training loss became {value} at epoch {epoch}; lower the learning rate")
        self.epoch, self.value = epoch, value

    def __reduce__(self):  # crosses process boundaries (Ray tasks) with its fields intact
        return (NonFiniteLoss, (self.epoch, self.value))


class StopTraining(Exception):
    """Raised by a callback to end training early (e.g. an hpo pruner); the history so far is kept."""


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    eval_loss: float
    eval_acc: float
    images_per_s: float
    seconds: float


@dataclass
class History:
    epochs: list[EpochMetrics] = field(default_factory=list)
    eval_name: str = "val"
    stopped_early: bool = False
    images_seen: int = 0

    @property
    def final(self) -> EpochMetrics:
        return self.epochs[-1]

    @property
    def best_eval_acc(self) -> float:
        return max((e.eval_acc for e in self.epochs if not math.isnan(e.eval_acc)), default=math.nan)


class Callback:
    """Hooks of the loop; override what you need. on_epoch_end may raise StopTraining."""

    # True for callbacks that change weights or gradients (masks, penalties, soft pruning): in a distributed
    # run every process runs them; the others (records, reports) run in rank 0 only
    every_process: bool = False

    def on_train_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None: ...

    def after_backward(self, model: nn.Module) -> None: ...

    def after_step(self, model: nn.Module) -> None: ...

    def after_epoch_train(self, model: nn.Module) -> None:
        """Called after each epoch's training pass, before that epoch's evaluation."""

    def on_epoch_end(self, metrics: EpochMetrics, model: nn.Module) -> None: ...

    def on_train_end(self, history: History) -> None:
        """Called once training stops for any reason (done, stopped early, failed, interrupted)."""
