"""Pruning methods in a registry; each turns a trained model into a PrunedModel."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from rethink.models import ArchSpec, model_entry

from .surgery import PruneError


@dataclass(frozen=True)
class PruneConfig:
    """What to prune. `ratio`: fraction removed (per layer, or globally for slimming/magnitude);
    `variant`: a named predefined layout (l1-norm); `min_channels`: the floor per layer (slimming)."""

    method: str
    ratio: float | None = None
    variant: str | None = None
    min_channels: int = 1
    scope: str = "global"  # magnitude: one global threshold, or "layer"
    calibration_images: int = 256  # thinet: images whose activations are sampled
    seed: int = 0
    like: str | None = None  # random: the method whose per-layer widths (or weight counts) it copies
    rounds: int = 1  # magnitude: prune-rewind-retrain rounds to reach `ratio` (rethink.prune.iterative)
    # depgraph (library models): the criterion, how a coupled group's scores combine, the most any layer
    # loses (Torch-Pruning's cap: a layer past it stops being pruned, checked between steps, so one global
    # step may overshoot it), channel counts rounded to a multiple, steps to reach `ratio`, layers left alone
    criterion: str | None = None
    group_reduction: str = "mean"
    max_ratio: float = 1.0
    round_to: int | None = None
    steps: int = 1
    ignore: tuple[str, ...] = ()

    def __post_init__(self):
        if self.scope == "local":  # Torch-Pruning's word for one ratio per layer
            object.__setattr__(self, "scope", "layer")
        object.__setattr__(self, "ignore", tuple(self.ignore))
        if self.ratio is not None and not (math.isfinite(self.ratio) and 0 <= self.ratio < 1):
            raise PruneError(f"ratio={self.ratio} is outside [0, 1): give the fraction of channels/weights removed")
        if self.min_channels < 0:
            raise PruneError(f"min_channels={self.min_channels} must be >= 0")
        if self.scope not in ("global", "layer"):
            raise PruneError(f"scope={self.scope!r}; valid: global, layer (or local)")
        if self.rounds < 1:
            raise PruneError(f"rounds={self.rounds} must be >= 1")
        if self.steps < 1:
            raise PruneError(f"steps={self.steps} must be >= 1")
        if not (0 < self.max_ratio <= 1):
            raise PruneError(f"max_ratio={self.max_ratio} is outside (0, 1]: the most of a layer's channels removed")
        if self.round_to is not None and self.round_to < 1:
            raise PruneError(f"round_to={self.round_to} must be >= 1")

    def to_dict(self) -> dict:
        """The config as data; options at their defaults left out, so older digests stay as they were."""
        d = asdict(self) | {"ignore": list(self.ignore)}
        return {k: v for k, v in d.items() if v is not None and not (k in QUIET_DEFAULTS and v == QUIET_DEFAULTS[k])}


QUIET_DEFAULTS = {"rounds": 1, "group_reduction": "mean", "max_ratio": 1.0, "steps": 1, "ignore": []}


@dataclass(eq=False)
class PrunedModel:
    """An architecture spec, the inherited weights, the kept channels per unit (structured) or masks."""

    spec: ArchSpec
    model: nn.Module
    config: PruneConfig
    keep: dict[int, list[int]] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] | None = None

    @property
    def structured(self) -> bool:
        return self.masks is None


PruneFn = Callable[[nn.Module, ArchSpec, PruneConfig, torch.Tensor | None], PrunedModel]


@dataclass(frozen=True)
class MethodEntry:
    name: str
    fn: PruneFn = field(repr=False)
    families: tuple[str, ...]
    structured: bool = True
    needs_data: bool | Callable[[PruneConfig], bool] = False  # calibration images (always, or for some configs)
    needs_bn: bool = False  # ranks BN scales: refused for a model without BN
    inherits: bool = True  # the pruned model keeps trained weights (False: an architecture only, nothing to fine-tune)
    # Raised whenever a fix changes what the method returns: it enters the digests of the pruned model, the
    # studies and the final runs, so results of the old code are never found again as if they were current.
    version: int = 1


METHODS: dict[str, MethodEntry] = {}


def register_method(
    name: str,
    families: tuple[str, ...],
    structured: bool = True,
    needs_data: bool | Callable[[PruneConfig], bool] = False,
    version: int = 1,
    needs_bn: bool = False,
    inherits: bool = True,
):
    def wrap(fn: PruneFn) -> PruneFn:
        METHODS[name] = MethodEntry(
            name, fn, families, structured, needs_data, needs_bn=needs_bn, inherits=inherits, version=version
        )
        return fn

    return wrap


def needs_data(config: PruneConfig) -> bool:
    """Whether the configured method reads calibration images."""
    entry = METHODS.get(config.method)
    if entry is None:
        return False
    return entry.needs_data(config) if callable(entry.needs_data) else entry.needs_data


def method_version(name: str) -> int:
    return METHODS[name].version


def prune(model: nn.Module, spec: ArchSpec, config: PruneConfig, data: torch.Tensor | None = None) -> PrunedModel:
    """Prune a trained model (left untouched) with the configured method."""
    if config.method not in METHODS:
        raise PruneError(f"unknown method {config.method!r}; valid names: {', '.join(sorted(METHODS))}")
    entry = METHODS[config.method]
    if config.rounds > 1:
        raise PruneError(f"rounds={config.rounds}: iterative pruning trains; call rethink.prune.iterative_magnitude")
    family = model_entry(spec.model).family
    if family not in entry.families:
        raise PruneError(f"{config.method} does not support {spec.model}; it supports: {', '.join(entry.families)}")
    if entry.needs_bn and not model_entry(spec.model).batch_norm:
        raise PruneError(
            f"{config.method} ranks BN scales and {spec.model} has no BN; use l1-norm, thinet or magnitude"
        )
    if needs_data(config) and data is None:
        raise PruneError(f"{config.method} needs calibration images (data=...)")
    was_training = model.training
    model.eval()
    try:
        return entry.fn(model, spec, config, data)
    finally:
        model.train(was_training)
