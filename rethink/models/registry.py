"""Model registry: a name maps to a constructor that takes input channels, classes and widths."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from rethink.errors import UserError


class ModelError(UserError):
    """Unknown model name or widths that do not fit the model."""


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to rebuild a model: name, per-layer widths, input shape, number of classes."""

    model: str
    widths: tuple[int, ...]
    in_channels: int = 3
    num_classes: int = 10
    input_size: int = 32
    classifier: str = "default"  # VGG: "bn-mlp" (Li et al.'s head, the default) or "linear" (slimming, weight-level)
    bn_init: float = 1.0  # conv BN scale at init; 0.5 in the official Network Slimming and L1-norm VGGs
    conv_init: str = "default"  # VGG: "weight-level" = the weight-level code's convs (bias on, He init over fan-in)
    model_args: str = ""  # a library model (timm:/torchvision:): its constructor's keyword arguments, canonical JSON
    layout: str = ""  # a pruned library model: its layers' new shapes (rethink.models.layout), canonical JSON

    def to_dict(self) -> dict:
        """Options at their defaults are left out, so specs written before they existed keep their digests."""
        d = asdict(self) | {"widths": list(self.widths)}
        d |= {k: json.loads(d[k]) for k in JSON_FIELDS if d[k]}  # as data in the run's JSON record
        return {k: v for k, v in d.items() if k not in OPTION_DEFAULTS or v != OPTION_DEFAULTS[k]}

    @classmethod
    def from_dict(cls, d: dict) -> ArchSpec:
        unknown = set(d) - {"model", "widths", "in_channels", "num_classes", "input_size", *OPTION_DEFAULTS}
        if unknown:
            raise ModelError(f"arch spec has unknown fields {sorted(unknown)}")
        d = d | {k: canonical_json(d[k]) for k in JSON_FIELDS if k in d}
        return cls(**{**d, "widths": tuple(int(w) for w in d["widths"])})

    def with_widths(self, widths: Sequence[int]) -> ArchSpec:
        return replace(self, widths=tuple(widths))


OPTION_DEFAULTS = {"classifier": "default", "bn_init": 1.0, "conv_init": "default", "model_args": "", "layout": ""}
JSON_FIELDS = ("model_args", "layout")


def canonical_json(value: dict | str | None) -> str:
    """A JSON object as the canonical string an ArchSpec holds (sorted keys; empty for none)."""
    if isinstance(value, str):
        value = json.loads(value) if value else None
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else ""


@dataclass(frozen=True)
class Unit:
    """A prunable group of channels, the unit of structured pruning and surgery.

    Plain unit: the output channels of `conv`, normalized by `bn` (None in a model without BN), read (dim 1)
    by `consumers`.
    Selection unit (conv is None): the channels of `bn`'s output that `select` passes on to `consumers`
    (PreResNet and DenseNet pre-activation); `bn` keeps its width, only the selection shrinks.
    `width` is the index in ArchSpec.widths that this unit's channel count sets.
    """

    bn: str | None
    consumers: tuple[str, ...]
    width: int
    conv: str | None = None
    select: str | None = None

    @property
    def label(self) -> str:
        """The module that names the unit in messages and maps: its BN, or its conv where it has none."""
        return self.bn or self.conv  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    default_widths: tuple[int, ...]
    build: Callable[..., nn.Module] = field(repr=False)
    units: Callable[[nn.Module], list[Unit]] = field(repr=False, default=lambda m: [])
    classifiers: tuple[str, ...] = ()  # the heads `build(..., classifier=NAME)` offers, the default first
    conv_inits: tuple[str, ...] = ()  # the conv styles `build(..., conv_init=NAME)` offers besides "default"
    input_size: int = 32  # the image size it is made for (CIFAR 32, ImageNet 224); it runs on any from 8
    batch_norm: bool = True  # whether its units have BNs (slimming ranks their scales)


MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    family: str,
    default_widths: Sequence[int],
    units: Callable | None = None,
    classifiers: Sequence[str] = (),
    conv_inits: Sequence[str] = (),
    input_size: int = 32,
    batch_norm: bool = True,
):
    """Decorator: register `fn(in_channels, num_classes, widths) -> nn.Module` under `name`.

    `units(model)` lists the model's prunable channel groups (see Unit), in width order. A model with a
    choice of head lists the names in `classifiers` (default first); fn then takes `classifier=NAME`.
    """

    def wrap(fn):
        MODELS[name] = ModelEntry(
            name,
            family,
            tuple(default_widths),
            fn,
            units or (lambda m: []),
            tuple(classifiers),
            tuple(conv_inits),
            input_size,
            batch_norm,
        )
        return fn

    return wrap


def model_entry(name: str) -> ModelEntry:
    if name not in MODELS and ":" in name:
        from .external import external_entry

        return external_entry(name)
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def default_spec(
    name: str,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    width_scale: float = 1.0,
    classifier: str = "default",
    bn_init: float = 1.0,
    conv_init: str = "default",
    model_args: dict | str | None = None,
) -> ArchSpec:
    """The registered architecture, optionally with every width scaled (at least 1 channel each)."""
    widths = tuple(max(1, round(w * width_scale)) for w in model_entry(name).default_widths)
    args = canonical_json(model_args)
    return ArchSpec(name, widths, in_channels, num_classes, input_size, classifier, bn_init, conv_init, args)


def prunable_units(spec: ArchSpec, model: nn.Module) -> list[Unit]:
    return model_entry(spec.model).units(model)


def build_model(spec: ArchSpec) -> nn.Module:
    entry = model_entry(spec.model)
    if entry.family == "external":
        return entry.build(spec)
    if spec.model_args or spec.layout:
        raise ModelError(f"{spec.model}: model_args and layout are for library models (timm:NAME, torchvision:NAME)")
    if len(spec.widths) != len(entry.default_widths):
        raise ModelError(f"{spec.model} takes {len(entry.default_widths)} widths, got {len(spec.widths)}")
    if any(w < 1 for w in spec.widths):
        raise ModelError(f"{spec.model}: every width must be >= 1, got {list(spec.widths)}")
    if spec.input_size < 8:
        raise ModelError(f"input_size must be at least 8, got {spec.input_size}")
    options = {}
    if spec.classifier != "default":
        if spec.classifier not in entry.classifiers:
            offered = f"one of {', '.join(entry.classifiers)}" if entry.classifiers else "only its own"
            raise ModelError(f"classifier {spec.classifier!r} does not fit {spec.model}, which takes {offered}")
        options["classifier"] = spec.classifier
    if spec.conv_init != "default":
        if spec.conv_init not in entry.conv_inits:
            offered = f"one of {', '.join(entry.conv_inits)}" if entry.conv_inits else "only its own"
            raise ModelError(f"conv_init {spec.conv_init!r} does not fit {spec.model}, which takes {offered}")
        options["conv_init"] = spec.conv_init
    if not (spec.bn_init > 0 and spec.bn_init < float("inf")):
        raise ModelError(f"bn_init must be a positive BN scale, got {spec.bn_init}")
    if entry.input_size != 32:  # an ImageNet model: its head may depend on the size it is declared for
        options["input_size"] = spec.input_size
    model = entry.build(spec.in_channels, spec.num_classes, spec.widths, **options)
    if spec.bn_init != 1.0:  # the conv BNs only, as the official VGGs do (BatchNorm1d keeps its 1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(spec.bn_init)
    return model
