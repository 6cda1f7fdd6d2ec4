"""L1-norm filter pruning (Li et al. 2017): per layer, keep the filters of largest L1 norm; the paper's
predefined layouts (VGG-16-A, ResNet-56/110/34-A/B) are rethink.prune.variants."""

from __future__ import annotations

from rethink.models import ArchSpec, prunable_units

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import apply_keep, filter_norm, top_k
from .variants import unit_ratios


@register_method("l1-norm", families=("vgg", "resnet"))
def l1_norm(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    units = prunable_units(spec, model)
    keep = {}
    for k, ratio in unit_ratios(spec, len(units), config).items():
        scores = filter_norm(model, units[k], p=1)
        keep[k] = top_k(scores, max(1, int(len(scores) * (1 - ratio))))  # the paper's int() rounding
    small, pruned_spec = apply_keep(model, spec, keep)
    return PrunedModel(pruned_spec, small, config, keep)
