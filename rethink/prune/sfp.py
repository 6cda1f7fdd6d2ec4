"""Soft Filter Pruning (He et al. 2018): the smallest-L2 filters of each layer are zeroed after every
epoch while training goes on (they may recover); at the end they are physically removed."""

from __future__ import annotations

import torch
from torch import nn

from rethink.models import ArchSpec, prunable_units
from rethink.train import Callback

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError, apply_keep, filter_norm, top_k


def sfp_keep(model: nn.Module, spec: ArchSpec, ratio: float) -> dict[int, list[int]]:
    keep = {}
    for k, u in enumerate(prunable_units(spec, model)):
        norms = filter_norm(model, u, p=2)
        keep[k] = top_k(norms, max(1, int(len(norms) * (1 - ratio))))
    return keep


class SoftFilterPruning(Callback):
    """Zero the filters outside each layer's top-(1-ratio) by L2 norm at the end of every epoch."""

    def __init__(self, spec: ArchSpec, ratio: float):
        self.spec, self.ratio = spec, ratio

    @torch.no_grad()
    def on_epoch_end(self, metrics, model: nn.Module) -> None:
        units = prunable_units(self.spec, model)
        for k, kept in sfp_keep(model, self.spec, self.ratio).items():
            w = model.get_submodule(units[k].conv).weight
            mask = torch.zeros(w.shape[0], dtype=torch.bool, device=w.device)
            mask[kept] = True
            w[~mask] = 0


@register_method("sfp", families=("vgg", "resnet"))
def sfp(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    if config.ratio is None:
        raise PruneError("sfp needs a ratio: the fraction of filters removed per layer")
    keep = sfp_keep(model, spec, config.ratio)
    small, pruned_spec = apply_keep(model, spec, keep)
    return PrunedModel(pruned_spec, small, config, keep)
