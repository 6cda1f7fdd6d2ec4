"""Physical channel removal: a new, smaller model from the kept channels of each unit, weights copied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rethink.errors import UserError
from rethink.models import ArchSpec, Unit, build_model, prunable_units

Keep = Mapping[int, Sequence[int]]  # unit index -> kept channel positions (within the unit's current width)


class PruneError(UserError):
    """A pruning request that does not fit the model (bad variant, ratio, or an emptied layer)."""


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def new_spec(spec: ArchSpec, units: Sequence[Unit], keep: Keep) -> ArchSpec:
    widths = list(spec.widths)
    for k, kept in keep.items():
        if len(kept) == 0:
            raise PruneError(f"unit {k} ({units[k].label}) would lose every channel; keep at least one")
        widths[units[k].width] = len(kept)
    return spec.with_widths(widths)


def apply_keep(model: nn.Module, spec: ArchSpec, keep: Keep) -> tuple[nn.Module, ArchSpec]:
    """Build the pruned architecture and copy the kept slices of conv, BN (running stats too),
    channel selections and the consumers' input channels."""
    units = prunable_units(spec, model)
    pruned_spec = new_spec(spec, units, keep)
    small = build_model(pruned_spec)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for k, kept in keep.items():
        u = units[k]
        idx = torch.as_tensor(sorted(kept), dtype=torch.long)
        width = len(state[f"{u.select}.index"]) if u.conv is None else len(state[f"{u.conv}.weight"])
        if u.conv is not None:
            for p in ("weight", "bias"):  # a conv bias (weight-level VGG) follows its kept filters
                if f"{u.conv}.{p}" in state:
                    state[f"{u.conv}.{p}"] = state[f"{u.conv}.{p}"][idx]
            for p in ("weight", "bias", "running_mean", "running_var") if u.bn else ():
                state[f"{u.bn}.{p}"] = state[f"{u.bn}.{p}"][idx]
        else:
            state[f"{u.select}.index"] = state[f"{u.select}.index"][idx]
        for c in u.consumers:
            state[f"{c}.weight"] = state[f"{c}.weight"][:, consumer_columns(idx, width, state[f"{c}.weight"].shape[1])]
    small.load_state_dict(state)
    return small, pruned_spec


def consumer_columns(idx: torch.Tensor, width: int, inputs: int) -> torch.Tensor:
    """The consumer's input positions of the kept channels: the channels themselves, or, for a Linear that
    reads a flattened C×H×W map (ImageNet VGG's 7×7), each kept channel's H·W block."""
    per = inputs // width
    if per * width != inputs:
        raise PruneError(f"a consumer with {inputs} inputs does not read {width} channels")
    return idx if per == 1 else (idx[:, None] * per + torch.arange(per)).flatten()


@torch.no_grad()
def zero_pruned_channels(model: nn.Module, spec: ArchSpec, keep: Keep) -> nn.Module:
    """Silence the pruned channels in place: filter (and its bias), BN scale and BN shift to zero, so each
    pruned activation is exactly zero (a zeroed filter alone still passes its BN shift on)."""
    units = prunable_units(spec, model)
    for k, kept in keep.items():
        u = units[k]
        width = unit_width(model, u)
        dropped = torch.as_tensor(sorted(set(range(width)) - set(kept)), dtype=torch.long)
        if u.conv is not None:
            conv = _get(model, u.conv)
            conv.weight[dropped] = 0
            if conv.bias is not None:
                conv.bias[dropped] = 0
            channels = dropped
        else:
            channels = _get(model, u.select).index[dropped]
        if u.bn is not None:
            bn = _get(model, u.bn)
            bn.weight[channels] = 0
            bn.bias[channels] = 0
    return model


def unit_width(model: nn.Module, u: Unit) -> int:
    """The unit's current channel count: its conv's filters, or its selection's size (not its BN's)."""
    return _get(model, u.select).index.numel() if u.conv is None else _get(model, u.conv).out_channels


def top_k(scores: torch.Tensor, k: int) -> list[int]:
    """Positions of the k largest scores, ascending (stable under ties)."""
    order = torch.argsort(scores, descending=True, stable=True)
    return sorted(order[:k].tolist())


def bn_scale(model: nn.Module, u: Unit) -> torch.Tensor:
    """|gamma| of each of the unit's current channels."""
    gamma = _get(model, u.bn).weight.detach().abs()
    return gamma[_get(model, u.select).index] if u.conv is None else gamma


def filter_norm(model: nn.Module, u: Unit, p: int = 1) -> torch.Tensor:
    if u.conv is None:
        raise PruneError(f"{u.label}: a channel-selection unit has no filters to rank; use slimming")
    w = _get(model, u.conv).weight.detach()
    return w.flatten(1).norm(p=p, dim=1)
