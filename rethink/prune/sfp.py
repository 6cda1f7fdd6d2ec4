"""Soft Filter Pruning (He et al. 2018), as the paper's code runs it (cifar/soft-filter-pruning in
Eric-mingjie/rethinking-network-pruning): while the base trains, the lowest-L2 filters of every conv are
zeroed before the first epoch and after every epoch (they keep training, so they may regrow); only conv
weights are zeroed, BN is left alone. Pruning then removes the filters zeroed at the end.

Layer scope: the official mask covers every conv (stem, and both convs of each ResNet block). Filters
of a unit's conv (VGG convs, a ResNet block's first conv) are removed physically; the others (stem and
second conv of a block, whose outputs join the residual stream) stay in place as zero filters held by
masks, so the FLOPs they no longer spend are counted the way He et al. count them.
"""

from __future__ import annotations

import torch
from torch import nn

from rethink.models import ArchSpec, prunable_units
from rethink.train import Callback

from .masks import apply_masks
from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError, apply_keep


def n_zeroed(filters: int, ratio: float) -> int:
    """The official count, `int(filters * (1 - rate))` with rate the share kept: int(filters × ratio),
    leaving at least one filter."""
    return min(int(filters * ratio), filters - 1)


def conv_names(model: nn.Module) -> list[str]:
    """Every conv of the model, in module order: the official SFP scope."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def zeroed_filters(weight: torch.Tensor, ratio: float) -> list[int]:
    """The filters SFP zeroes: the int(n × ratio) of smallest L2 norm, ascending positions."""
    norms = weight.detach().flatten(1).norm(p=2, dim=1)
    order = torch.argsort(norms, stable=True)
    return sorted(order[: n_zeroed(len(norms), ratio)].tolist())


@torch.no_grad()
def zero_lowest_filters(model: nn.Module, ratio: float) -> dict[str, list[int]]:
    """One SFP step: zero the lowest-L2 filters of every conv in place; returns what was zeroed."""
    zeroed = {}
    for name in conv_names(model):
        w = model.get_submodule(name).weight
        zeroed[name] = zeroed_filters(w, ratio)
        w[zeroed[name]] = 0
    return zeroed


class SoftFilterPruning(Callback):
    """Base-training callback: zero the lowest-L2 filters of every conv before training and after every
    epoch's training pass (before its evaluation, as the official code validates the masked model)."""

    every_process = True  # changes the weights: every process of a distributed run applies it

    def __init__(self, ratio: float):
        if not 0 <= ratio < 1:
            raise PruneError(f"sfp ratio={ratio} is outside [0, 1): give the fraction of filters zeroed per layer")
        self.ratio = ratio

    def on_train_start(self, model, optimizer) -> None:
        zero_lowest_filters(model, self.ratio)

    def after_epoch_train(self, model) -> None:
        zero_lowest_filters(model, self.ratio)


@register_method("sfp", families=("vgg", "resnet"))
def sfp(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    if config.ratio is None:
        raise PruneError("sfp needs a ratio: the fraction of filters removed per layer")
    units = prunable_units(spec, model)
    unit_of = {u.conv: k for k, u in enumerate(units)}
    keep: dict[int, list[int]] = {}
    held: dict[str, list[int]] = {}  # conv name -> zeroed filters kept in place by a mask
    for name in conv_names(model):
        w = model.get_submodule(name).weight
        zeroed = set(zeroed_filters(w, config.ratio))
        if name in unit_of:
            keep[unit_of[name]] = [c for c in range(w.shape[0]) if c not in zeroed]
        elif zeroed:
            held[name] = sorted(zeroed)
    small, pruned_spec = apply_keep(model, spec, keep)
    if not held:
        return PrunedModel(pruned_spec, small, config, keep)
    masks = {}
    for name, zeroed in held.items():
        w = small.get_submodule(name).weight
        mask = torch.ones(w.shape, dtype=torch.bool)
        mask[zeroed] = False
        masks[f"{name}.weight"] = mask
    apply_masks(small, masks)
    return PrunedModel(pruned_spec, small, config, keep, masks)
