"""Network Slimming (Liu et al. 2017): L1 sparsity on BN scales while training, then one global
threshold on |gamma| over every prunable unit, with a per-layer floor."""

from __future__ import annotations

import torch
from torch import nn

from rethink.distributed import plain_kind
from rethink.models import ArchSpec, prunable_units
from rethink.train import Callback

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError, apply_keep, bn_scale, top_k

PAPER_SPARSITY = {"vgg": 1e-4, "resnet": 1e-5, "preresnet": 1e-5, "densenet": 1e-5}


class SparsityPenalty(Callback):
    """Adds the subgradient of `strength` × Σ|gamma| over every BatchNorm2d scale after each backward."""

    every_process = True  # changes the gradients: every process of a distributed run applies it

    def __init__(self, strength: float):
        if not strength >= 0:
            raise ValueError(f"sparsity strength must be >= 0, got {strength}")
        self.strength = strength
        self._gammas: list[torch.Tensor] = []

    def on_train_start(self, model: nn.Module, optimizer) -> None:
        # plain_kind: a distributed run on CUDA trains SyncBatchNorms in the BatchNorm2d's places
        self._gammas = [m.weight for m in model.modules() if issubclass(plain_kind(m), nn.BatchNorm2d)]

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        for g in self._gammas:
            if g.grad is not None:
                g.grad.add_(torch.sign(g), alpha=self.strength)


@register_method("slimming", families=("vgg", "resnet", "preresnet", "densenet"), needs_bn=True)
def slimming(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    if config.ratio is None:
        raise PruneError("slimming needs a ratio: the fraction of channels removed by the global threshold")
    units = prunable_units(spec, model)
    scores = [bn_scale(model, u) for u in units]
    flat = torch.cat(scores).sort().values
    # As the official code takes it (vggprune.py / resprune.py / denseprune.py in the paper's repository):
    # the threshold is the |gamma| at index int(total * ratio) of the ascending sort, and only scales above it
    # are kept, so int(total * ratio) + 1 channels go (more on ties). Ratio 0 keeps every channel.
    index = min(int(len(flat) * config.ratio), len(flat) - 1)
    threshold = flat[index] if config.ratio > 0 else flat.new_tensor(-1.0)
    keep = {}
    for k, s in enumerate(scores):
        kept = (s > threshold).nonzero().flatten().tolist()
        if len(kept) < config.min_channels:
            kept = top_k(s, min(config.min_channels, len(s)))
        if not kept:
            raise PruneError(
                f"slimming threshold {float(threshold):.4g} (ratio {config.ratio}) removes every channel of "
                f"{units[k].label}; lower the ratio or set min_channels >= 1"
            )
        keep[k] = kept
    small, pruned_spec = apply_keep(model, spec, keep)
    return PrunedModel(pruned_spec, small, config, keep)
