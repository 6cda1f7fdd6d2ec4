"""L1-norm filter pruning (Li et al. 2017): per layer, keep the filters of largest L1 norm.

Predefined variants follow the paper's code (rethinking-network-pruning, cifar/ and imagenet/l1-norm-pruning):
layer ids count 3×3 convs from 1 (the stem); even ids are the first conv of each residual block, the only
ones pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

from rethink.models import ArchSpec, prunable_units

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError, apply_keep, filter_norm, top_k


@dataclass(frozen=True)
class Variant:
    model: str
    skip: tuple[int, ...] = ()  # ResNet layer ids left alone
    stage_ratios: tuple[float, ...] = ()  # ResNet: ratio per stage
    vgg_layers: tuple[int, ...] = ()  # VGG: 1-based conv indices pruned by half
    stages: tuple[int, ...] = ()  # ResNet: blocks per stage (default: three equal stages, the CIFAR ResNets)


VARIANTS = {
    "vgg16-a": Variant("vgg16", vgg_layers=(1, 8, 9, 10, 11, 12, 13)),
    "resnet56-a": Variant("resnet56", (16, 20, 38, 54), (0.1, 0.1, 0.1)),
    "resnet56-b": Variant("resnet56", (16, 18, 20, 34, 38, 54), (0.6, 0.3, 0.1)),
    "resnet110-a": Variant("resnet110", (36,), (0.5, 0.0, 0.0)),
    "resnet110-b": Variant("resnet110", (36, 38, 74), (0.5, 0.4, 0.3)),
    # imagenet/l1-norm-pruning/prune.py: the same skips for A and B, ratios per stage of ResNet-34 (3, 4, 6, 3)
    "resnet34-a": Variant("resnet34", (2, 8, 14, 16, 26, 28, 30, 32), (0.3, 0.3, 0.3, 0.0), stages=(3, 4, 6, 3)),
    "resnet34-b": Variant("resnet34", (2, 8, 14, 16, 26, 28, 30, 32), (0.5, 0.6, 0.4, 0.0), stages=(3, 4, 6, 3)),
}


def unit_ratios(spec: ArchSpec, n_units: int, config: PruneConfig) -> dict[int, float]:
    """The removal ratio of each unit: a named variant, or one uniform ratio for every unit."""
    if config.variant is None:
        if config.ratio is None:
            raise PruneError("l1-norm needs a ratio or a variant (" + ", ".join(VARIANTS) + ")")
        return dict.fromkeys(range(n_units), config.ratio)
    if config.variant not in VARIANTS:
        raise PruneError(f"unknown l1-norm variant {config.variant!r}; valid names: {', '.join(VARIANTS)}")
    v = VARIANTS[config.variant]
    if v.model != spec.model:
        raise PruneError(f"variant {config.variant!r} is defined for {v.model}, not {spec.model}")
    if v.vgg_layers:
        return {i - 1: 0.5 for i in v.vgg_layers}
    stages = v.stages or (n_units // 3,) * 3
    stage_of = [s for s, n in enumerate(stages) for _ in range(n)]
    ratios = {}
    for k in range(n_units):
        if 2 + 2 * k not in v.skip:  # block k's first conv is layer id 2 + 2k
            ratios[k] = v.stage_ratios[stage_of[k]]
    return ratios


@register_method("l1-norm", families=("vgg", "resnet"))
def l1_norm(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    units = prunable_units(spec, model)
    keep = {}
    for k, ratio in unit_ratios(spec, len(units), config).items():
        scores = filter_norm(model, units[k], p=1)
        keep[k] = top_k(scores, max(1, int(len(scores) * (1 - ratio))))  # the paper's int() rounding
    small, pruned_spec = apply_keep(model, spec, keep)
    return PrunedModel(pruned_spec, small, config, keep)
