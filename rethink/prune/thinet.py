"""ThiNet (Luo et al. 2017): keep the input channels of the next layer that best reconstruct its output.

For each unit whose consumer is a conv, the consumer's input is recorded on calibration images; at
sampled output positions each input channel's contribution is computed, and channels are removed
greedily, each time the one whose removal adds the least squared error to the consumer's output.
"""

from __future__ import annotations

import torch
from torch import nn

from rethink.models import ArchSpec, prunable_units

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError, apply_keep

SAMPLES_PER_IMAGE = 10


def contributions(x: torch.Tensor, conv: nn.Conv2d, samples: int, generator: torch.Generator) -> torch.Tensor:
    """(samples × N, C): each input channel's share of the conv's output at random (image, position, filter)."""
    cols = nn.functional.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # N, C*kk, L
    n, _, locations = cols.shape
    c = conv.in_channels
    w = conv.weight.detach().view(conv.out_channels, c, -1)
    img = torch.arange(n).repeat_interleave(samples)
    loc = torch.randint(0, locations, (n * samples,), generator=generator)
    out = torch.randint(0, conv.out_channels, (n * samples,), generator=generator)
    patches = cols[img, :, loc].view(-1, c, w.shape[-1])  # S, C, kk
    return (patches * w[out]).sum(-1)


def greedy_remove(z: torch.Tensor, n_remove: int) -> list[int]:
    """Channels whose summed contributions have the smallest norm, chosen one at a time (ThiNet)."""
    removed: list[int] = []
    total = torch.zeros(z.shape[0], dtype=z.dtype)
    available = torch.ones(z.shape[1], dtype=torch.bool)
    sq = (z * z).sum(0)
    for _ in range(n_remove):
        cost = sq + 2 * (total @ z)
        cost[~available] = float("inf")
        best = int(cost.argmin())
        removed.append(best)
        available[best] = False
        total += z[:, best]
    return removed


@register_method("thinet", families=("vgg", "resnet"), needs_data=True)
def thinet(model, spec: ArchSpec, config: PruneConfig, data: torch.Tensor) -> PrunedModel:
    if config.ratio is None:
        raise PruneError("thinet needs a ratio: the fraction of channels removed per layer")
    units = prunable_units(spec, model)
    targets = [k for k, u in enumerate(units) if isinstance(model.get_submodule(u.consumers[0]), nn.Conv2d)]
    recorded: dict[int, torch.Tensor] = {}
    hooks = [
        model.get_submodule(units[k].consumers[0]).register_forward_pre_hook(
            lambda m, inp, k=k: recorded.__setitem__(k, inp[0].detach())
        )
        for k in targets
    ]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(data[: config.calibration_images].to(device))
    finally:
        for h in hooks:
            h.remove()
    g = torch.Generator().manual_seed(config.seed)
    keep = {}
    for k in targets:
        conv = model.get_submodule(units[k].consumers[0])
        z = contributions(recorded[k].cpu(), conv, SAMPLES_PER_IMAGE, g).double()
        width = conv.in_channels
        n_keep = max(1, int(width * (1 - config.ratio)))
        removed = set(greedy_remove(z, width - n_keep))
        keep[k] = [c for c in range(width) if c not in removed]
    small, pruned_spec = apply_keep(model, spec, keep)
    return PrunedModel(pruned_spec, small, config, keep)
