"""The recipe of one training run, and the digest that names runs and finds reusable results."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

from .augment import AUGMENTATIONS
from .budget import SCHEDULES
from .errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
LATER_DEFAULTS = {
    "optimizer": "sgd",
    "mixup": 0.0,
    "cutmix": 0.0,
    "erasing": 0.0,
}  # fields added later: left out of to_dict at these values, so digests stay


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. Defaults are the paper's: SGD 0.9, wd 1e-4, batch 64, lr 0.1, 160 epochs, ×0.1 at 50/75%."""

    epochs: int = 160
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    augment: str = "crop-flip"
    label_smoothing: float = 0.0
    seed: int = 0
    optimizer: str = "sgd"  # or "adamw": momentum is its beta1, weight_decay decoupled and on >= 2-D weights only
    mixup: float = 0.0  # Beta α of mixup (0: off); rethink.mixing
    cutmix: float = 0.0  # Beta α of CutMix (0: off); with mixup too, each batch takes one at even odds
    erasing: float = 0.0  # random erasing: the probability that an image gets a noise box (rethink.erasing)

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": math.isfinite(self.lr) and self.lr > 0,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "milestones": all(0 < m < 1 for m in self.milestones),
            "gamma": 0 < self.gamma <= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "mixup": math.isfinite(self.mixup) and self.mixup >= 0,
            "cutmix": math.isfinite(self.cutmix) and self.cutmix >= 0,
            "erasing": 0 <= self.erasing <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"train config: {name}={getattr(self, name)!r} is out of range")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train config: schedule={self.schedule!r}; valid names: {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"train config: augment={self.augment!r}; valid names: {', '.join(AUGMENTATIONS)}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("train config: nesterov=True needs momentum > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train config: optimizer={self.optimizer!r}; valid names: {', '.join(OPTIMIZERS)}")
        if self.optimizer == "adamw" and self.nesterov:
            raise ConfigError("train config: nesterov=True is SGD's; AdamW has none: set nesterov = false")

    def to_dict(self) -> dict:
        d = asdict(self) | {"milestones": list(self.milestones)}
        return {k: v for k, v in d.items() if LATER_DEFAULTS.get(k, object()) != v}

    def digest(self) -> str:
        return config_digest(self.to_dict())

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def config_digest(d: dict) -> str:
    """A short stable hash of a JSON-able config: names runs and finds reusable results."""
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
