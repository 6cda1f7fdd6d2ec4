"""Layer patterns of pruned architectures (Liu et al. 2019, Section 5): the kept fraction of each layer
group, a group being a stage (the layers with the same feature-map size) and a role (channels a conv
makes, or channels a pre-activation layer reads; for weights, the conv's kernel size). A pattern carries
across depths and data sets; `rethink.prune.matched` turns one into an architecture of a given size."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from rethink.errors import UserError
from rethink.models import ArchSpec, build_model, prunable_units

from .registry import PrunedModel


class PatternError(UserError):
    """A pattern that cannot be applied (a layer group the source lacks) or a size it cannot match."""


def is_unstructured(pruned: PrunedModel) -> bool:
    """Weights removed one by one (masks, no channel removed); SFP's zeroed filters inside kept widths count
    as structured."""
    return pruned.masks is not None and not pruned.keep


def output_sizes(model: nn.Module, spec: ArchSpec, names: list[str]) -> dict[str, tuple[int, int]]:
    """The output height and width of each named module on one input of the spec's shape."""
    seen: dict[str, tuple[int, int]] = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[n].register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, tuple(out.shape[-2:])))
        for n in names
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size, device=_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return seen


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@functools.cache  # an architecture's groups never change; a derivation asks for them many times
def width_groups(spec: ArchSpec) -> tuple[str, ...]:
    """The group of each width of `spec` ("16x16/conv": the channels a conv makes at 16×16; "/select": the
    channels a pre-activation layer reads), so that patterns carry across depths and data sets."""
    with torch.device("meta"):
        model = build_model(spec)
    units = prunable_units(spec, model)
    sizes = output_sizes(model, spec, [u.label for u in units])
    groups: list[str | None] = [None] * len(spec.widths)
    for u in units:
        h, w = sizes[u.label]
        groups[u.width] = f"{h}x{w}/{'conv' if u.conv is not None else 'select'}"
    if None in groups:
        raise PatternError(f"{spec.model}: widths {[i for i, g in enumerate(groups) if g is None]} have no unit")
    return tuple(groups)  # type: ignore[arg-type]


@functools.cache
def conv_groups(spec: ArchSpec) -> MappingProxyType:
    """The group of each conv weight ("16x16/k3": 3×3 convs whose output is 16×16)."""
    with torch.device("meta"):
        model = build_model(spec)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    sizes = output_sizes(model, spec, list(convs))
    return MappingProxyType(
        {f"{n}.weight": f"{sizes[n][0]}x{sizes[n][1]}/k{m.kernel_size[0]}" for n, m in convs.items()}
    )


@dataclass(frozen=True)
class Pattern:
    """Kept fraction per layer group: of channels (widths) or of conv weights (densities)."""

    fractions: dict[str, float]
    unstructured: bool
    source: str = ""  # what it was read from (a spec name, "uniform")

    def to_dict(self) -> dict:
        return {"fractions": dict(self.fractions), "unstructured": self.unstructured, "source": self.source}


def pattern_of(base_spec: ArchSpec, pruned: PrunedModel, source: str = "") -> Pattern:
    """The group pattern of a pruned architecture: mean kept fraction of each group's widths, or the share of
    each group's conv weights kept."""
    if is_unstructured(pruned):
        groups = conv_groups(base_spec)
        kept: dict[str, list[int]] = {}
        for name, mask in pruned.masks.items():
            k = kept.setdefault(groups[name], [0, 0])
            k[0] += int(mask.sum())
            k[1] += mask.numel()
        return Pattern({g: a / b for g, (a, b) in kept.items()}, True, source)
    ratios: dict[str, list[float]] = {}
    for g, base, now in zip(width_groups(base_spec), base_spec.widths, pruned.spec.widths, strict=True):
        ratios.setdefault(g, []).append(now / base)
    return Pattern({g: sum(r) / len(r) for g, r in ratios.items()}, False, source)


def uniform_pattern(base_spec: ArchSpec, unstructured: bool) -> Pattern:
    groups = set(conv_groups(base_spec).values()) if unstructured else set(width_groups(base_spec))
    return Pattern(dict.fromkeys(sorted(groups), 1.0), unstructured, "uniform")
