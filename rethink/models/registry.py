"""Model registry: a name maps to a constructor that takes input channels, classes and widths."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

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

    def to_dict(self) -> dict:
        return asdict(self) | {"widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict) -> ArchSpec:
        unknown = set(d) - {"model", "widths", "in_channels", "num_classes", "input_size"}
        if unknown:
            raise ModelError(f"arch spec has unknown fields {sorted(unknown)}")
        return cls(**{**d, "widths": tuple(int(w) for w in d["widths"])})


@dataclass(frozen=True)
class Unit:
    """A prunable group of channels, the unit of structured pruning and surgery.

    Plain unit: the output channels of `conv`, normalized by `bn`, read (dim 1) by `consumers`.
    Selection unit (conv is None): the channels of `bn`'s output that `select` passes on to `consumers`
    (PreResNet and DenseNet pre-activation); `bn` keeps its width, only the selection shrinks.
    `width` is the index in ArchSpec.widths that this unit's channel count sets.
    """

    bn: str
    consumers: tuple[str, ...]
    width: int
    conv: str | None = None
    select: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    default_widths: tuple[int, ...]
    build: Callable[[int, int, Sequence[int]], nn.Module] = field(repr=False)
    units: Callable[[nn.Module], list[Unit]] = field(repr=False, default=lambda m: [])


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, family: str, default_widths: Sequence[int], units: Callable | None = None):
    """Decorator: register `fn(in_channels, num_classes, widths) -> nn.Module` under `name`.

    `units(model)` lists the model's prunable channel groups (see Unit), in width order.
    """

    def wrap(fn):
        MODELS[name] = ModelEntry(name, family, tuple(default_widths), fn, units or (lambda m: []))
        return fn

    return wrap


def model_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def default_spec(
    name: str, in_channels: int = 3, num_classes: int = 10, input_size: int = 32, width_scale: float = 1.0
) -> ArchSpec:
    """The registered architecture, optionally with every width scaled (at least 1 channel each)."""
    widths = tuple(max(1, round(w * width_scale)) for w in model_entry(name).default_widths)
    return ArchSpec(name, widths, in_channels, num_classes, input_size)


def prunable_units(spec: ArchSpec, model: nn.Module) -> list[Unit]:
    return model_entry(spec.model).units(model)


def build_model(spec: ArchSpec) -> nn.Module:
    entry = model_entry(spec.model)
    if len(spec.widths) != len(entry.default_widths):
        raise ModelError(f"{spec.model} takes {len(entry.default_widths)} widths, got {len(spec.widths)}")
    if any(w < 1 for w in spec.widths):
        raise ModelError(f"{spec.model}: every width must be >= 1, got {list(spec.widths)}")
    if spec.input_size < 8:
        raise ModelError(f"input_size must be at least 8, got {spec.input_size}")
    return entry.build(spec.in_channels, spec.num_classes, spec.widths)
