"""Unstructured magnitude pruning: one global |w| threshold over conv weights (or one per layer)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from rethink.models import ArchSpec

from .masks import apply_masks
from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError


def conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.weight": m.weight for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def magnitude_masks(
    model: nn.Module, ratio: float, scope: str = "global", kept: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Masks keeping the largest-|w| conv weights; `ratio` of them (globally, with the official code's
    threshold, or per layer) become zero. With `kept` (an earlier round's masks) only kept weights are
    ranked and `ratio` is a fraction of them, as the official iterative code counts it."""
    weights = {k: w.detach().abs() for k, w in conv_weights(model).items()}
    if kept is not None:  # pruned weights rank below every kept one (|w| >= 0 > -1) and stay pruned
        weights = {k: torch.where(kept[k].bool(), w, w.new_tensor(-1.0)) for k, w in weights.items()}
    if scope == "global":
        # As the official code (cifar/weight-level/cifar_prune.py): sorted |w| y, thre = y[int(total × ratio)],
        # keep |w| > thre, so the weight at that index goes too; ratio 0 prunes nothing. Iteratively
        # (cifar/lottery-ticket/weight-level/cifar_prune_iterative.py) the index is shifted past the zeros:
        # y[total - nonzero + int(nonzero × ratio)].
        flat = torch.cat([w.flatten() for w in weights.values()])
        zeros = int((flat < 0).sum())
        k = zeros + int(ratio * (flat.numel() - zeros))
        threshold = torch.kthvalue(flat, min(k + 1, flat.numel())).values if k > zeros else flat.new_tensor(-0.5)
        return {name: w > threshold for name, w in weights.items()}
    masks = {}
    for name, w in weights.items():
        zeros = int((w < 0).sum())
        k = zeros + int(ratio * (w.numel() - zeros))
        threshold = torch.kthvalue(w.flatten(), k).values if k > zeros else w.new_tensor(-0.5)
        masks[name] = w > threshold
    return masks


@register_method("magnitude", families=("vgg", "resnet", "preresnet", "densenet"), structured=False)
def magnitude(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    if config.ratio is None:
        raise PruneError("magnitude needs a ratio: the fraction of conv weights set to zero")
    masks = magnitude_masks(model, config.ratio, config.scope)
    pruned = copy.deepcopy(model)
    apply_masks(pruned, masks)
    return PrunedModel(spec, pruned, config, masks=masks)
