"""A control for the pruning criterion: the per-layer widths (structured) or per-layer weight counts
(unstructured) that another method gives, with the channels or weights chosen at random instead."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from rethink.models import ArchSpec, model_entry, prunable_units

from .depgraph import random_like_layout
from .masks import apply_masks
from .registry import PruneConfig, PrunedModel, prune, register_method
from .surgery import PruneError, apply_keep, unit_width


def random_like(model, spec: ArchSpec, reference: PrunedModel, config: PruneConfig) -> PrunedModel:
    """`reference`'s shape with a random selection (seeded by `config.seed`): random channels at its widths,
    random filters where it holds whole filters at zero (sfp), random weights at its per-layer counts."""
    if model_entry(spec.model).family == "external":  # a library model: DepGraph draws the channels
        return random_like_layout(model, spec, reference, config)
    g = torch.Generator().manual_seed(config.seed)
    if reference.masks is not None and not reference.keep:
        masks = {}
        for name, mask in reference.masks.items():
            n_kept = int(mask.sum())
            chosen = torch.randperm(mask.numel(), generator=g)[:n_kept]
            flat = torch.zeros(mask.numel(), dtype=torch.bool)
            flat[chosen] = True
            masks[name] = flat.view_as(mask)
        pruned = copy.deepcopy(model)
        apply_masks(pruned, masks)
        return PrunedModel(spec, pruned, config, masks=masks)
    units = prunable_units(spec, model)
    keep = {}
    for k, kept in reference.keep.items():
        keep[k] = sorted(torch.randperm(unit_width(model, units[k]), generator=g)[: len(kept)].tolist())
    small, small_spec = apply_keep(model, spec, keep)
    if reference.masks is None:
        return PrunedModel(small_spec, small, config, keep)
    masks = {}
    for name, mask in reference.masks.items():  # whole filters held at zero: as many, chosen at random
        filters = mask.flatten(1).any(1)
        held = torch.randperm(len(filters), generator=g)[: int((~filters).sum())]
        masks[name] = torch.ones(small.get_parameter(name).shape, dtype=torch.bool)
        masks[name][held] = False
    apply_masks(small, masks)
    return PrunedModel(small_spec, small, config, keep, masks)


@register_method("random", families=("vgg", "resnet", "preresnet", "densenet", "external"))
def random_selection(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    """Random channels (or weights) at the widths (or counts) of `config.like` (default: l1-norm, or
    slimming for the families only slimming prunes)."""
    family = model_entry(spec.model).family
    like = config.like or {"vgg": "l1-norm", "resnet": "l1-norm", "external": "depgraph"}.get(family, "slimming")
    if like == "random":
        raise PruneError("random needs another method to copy its widths from (like = 'l1-norm', say)")
    reference = prune(model, spec, replace(config, method=like, like=None), data)
    return random_like(model, spec, reference, config)
