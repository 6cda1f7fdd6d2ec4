"""Resumable training: a callback that snapshots a run after an epoch (weights, optimizer, the epochs so far,
the RNG), and the state `train(..., resume=STATE)` continues from, so a killed run loses at most one epoch
and ends with what an uninterrupted run would have (batches and learning rates come from (seed, epoch)).
Where a snapshot goes is the caller's: `write(state)` (the study layer puts it in the MLflow run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from .history import Callback, EpochMetrics, History

RESUME_FORMAT = 1
EVERY_SECONDS = 60.0  # a snapshot once this much training passed since the last: short epochs redo cheaper


class EpochCheckpoint(Callback):
    """After an epoch, when `every_s` seconds of training passed since the last snapshot (0: every epoch),
    hand `write` the state to resume from. `prior`: the epochs of the run this one resumes, if any."""

    def __init__(
        self,
        write: Callable[[dict], None],
        digest: str,
        every_s: float = EVERY_SECONDS,
        prior: list[EpochMetrics] | None = None,
        images_seen: int = 0,
    ):
        self.write, self.digest, self.every_s = write, digest, every_s
        self.epochs = list(prior or [])
        self.images_seen = images_seen
        self.optimizer: torch.optim.Optimizer | None = None
        self.last = time.monotonic()

    def on_train_start(self, model: nn.Module, optimizer) -> None:
        self.optimizer = optimizer
        self.last = time.monotonic()

    def on_epoch_end(self, metrics: EpochMetrics, model: nn.Module) -> None:
        self.epochs.append(metrics)
        self.images_seen += round(metrics.images_per_s * metrics.seconds)
        if time.monotonic() - self.last < self.every_s or self.optimizer is None:
            return
        self.write(snapshot(model, self.optimizer, self.epochs, self.images_seen, self.digest))
        self.last = time.monotonic()


def snapshot(model: nn.Module, optimizer, epochs: list[EpochMetrics], images_seen: int, digest: str) -> dict:
    """Tensors and plain values only: read back with torch.load(weights_only=True)."""
    state = {
        "format": RESUME_FORMAT,
        "digest": digest,
        "epoch": epochs[-1].epoch,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(optimizer.state_dict()),
        "epochs": [asdict(m) for m in epochs],
        "images_seen": images_seen,
        "rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def valid_state(state: object, digest: str) -> bool:
    """A snapshot this rethink wrote for a run of this recipe (`digest`), with every field it needs."""
    keys = {"format", "digest", "epoch", "model", "optimizer", "epochs", "images_seen", "rng"}
    return (
        isinstance(state, dict)
        and keys <= set(state)
        and state["format"] == RESUME_FORMAT
        and state["digest"] == digest
        and isinstance(state["model"], dict)
        and len(state["epochs"]) == state["epoch"] + 1
    )


def restore(state: dict, model: nn.Module, optimizer, history: History) -> int:
    """Load a snapshot into the run about to train; the first epoch still to train."""
    model.load_state_dict(state["model"])
    device = next(model.parameters()).device
    optimizer.load_state_dict(state["optimizer"])
    for s in optimizer.state.values():  # momentum buffers follow the model's device
        for k, v in s.items():
            if isinstance(v, torch.Tensor) and k != "step":
                s[k] = v.to(device)
    history.epochs = [EpochMetrics(**m) for m in state["epochs"]]
    history.images_seen = int(state["images_seen"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["epoch"]) + 1


def prior_epochs(state: dict | None) -> tuple[list[EpochMetrics], int]:
    """The resumed run's epochs and images seen, for the EpochCheckpoint that continues its snapshots."""
    if state is None:
        return [], 0
    return [EpochMetrics(**m) for m in state["epochs"]], int(state["images_seen"])
