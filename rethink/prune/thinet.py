"""ThiNet (Luo et al. 2017): keep the input channels of the next layer that best reconstruct its output,
as the official code does it (Roll920/ThiNet_Code, ThiNet_ICCV/compress_model.py: get_index, value_sum,
compress_net).

Layer by layer, from the first unit to the last: the consumer's input is recorded on calibration images
through the network as pruned so far; at sampled (image, position, filter) points each input channel's
contribution is computed; channels are removed greedily, each time the one whose removal adds the least
to the squared norm of the removed contributions' sum; then the kept channels are rescaled by the least-
squares weights that best rebuild the full output (the consumer's filters are multiplied by them).
The official code fine-tunes between layers; here the finetune arm follows the whole pruning instead.
Units whose consumer is not a conv (VGG's last conv, read by the classifier) are left whole. `prune.variant`
"vgg-conv" prunes ThiNet's VGG-Conv layout instead of every unit (rethink.prune.variants).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from rethink.models import ArchSpec, prunable_units

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import apply_keep
from .variants import unit_ratios

SAMPLES_PER_IMAGE = 10  # the official code samples 10 locations per image


def contributions(x: torch.Tensor, conv: nn.Conv2d, samples: int, generator: torch.Generator) -> torch.Tensor:
    """(samples × N, C): each input channel's share of the conv's output at random (image, position, filter)."""
    cols = nn.functional.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # N, C*kk, L
    n, _, locations = cols.shape
    c = conv.in_channels
    w = conv.weight.detach().to(x.device).view(conv.out_channels, c, -1)
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


@dataclass(frozen=True)
class LayerChoice:
    """One layer's outcome: kept channels (ascending), their least-squares scales, and the reconstruction
    error ||y − Σ kept contributions|| before and after rescaling (y: the full output at the samples)."""

    kept: list[int]
    scale: torch.Tensor
    error_unscaled: float
    error: float


def choose_channels(z: torch.Tensor, n_keep: int) -> LayerChoice:
    """ThiNet on one layer's contributions z (samples × channels): greedy removal, then least squares."""
    z = z.double()
    removed = set(greedy_remove(z, z.shape[1] - n_keep))
    kept = [c for c in range(z.shape[1]) if c not in removed]
    y = z.sum(1, keepdim=True)
    selected = z[:, kept]
    scale = torch.linalg.lstsq(selected, y, driver="gelsd").solution.flatten()
    unscaled = float(torch.linalg.vector_norm(y.flatten() - selected.sum(1)))
    return LayerChoice(kept, scale, unscaled, float(torch.linalg.vector_norm(y.flatten() - selected @ scale)))


def n_kept(width: int, ratio: float) -> int:
    """The official count: int(width × compress_rate), compress_rate the share kept (at least one)."""
    return max(1, int(width * (1 - ratio)))


@register_method("thinet", families=("vgg", "resnet"), needs_data=True)
def thinet(model, spec: ArchSpec, config: PruneConfig, data: torch.Tensor) -> PrunedModel:
    units = prunable_units(spec, model)
    ratios = unit_ratios(spec, len(units), config)  # one ratio for every unit, or a variant's (VGG-Conv)
    targets = [k for k in ratios if isinstance(model.get_submodule(units[k].consumers[0]), nn.Conv2d)]
    device = next(model.parameters()).device
    images = data[: config.calibration_images].to(device)
    g = torch.Generator().manual_seed(config.seed)
    # The removed channels' consumer weights are zeroed as the walk goes (and the kept ones rescaled), so
    # each layer sees exactly the activations of the network pruned before it; one surgery at the end.
    work = copy.deepcopy(model).eval()
    keep: dict[int, list[int]] = {}
    for k in targets:  # shallow to deep
        consumer = work.get_submodule(units[k].consumers[0])
        recorded: list[torch.Tensor] = []
        hook = consumer.register_forward_pre_hook(lambda m, inp, out=recorded: out.append(inp[0].detach()))
        try:
            with torch.no_grad():
                work(images)
        finally:
            hook.remove()
        z = contributions(recorded[0].cpu(), consumer, SAMPLES_PER_IMAGE, g)
        choice = choose_channels(z, n_kept(consumer.in_channels, ratios[k]))
        keep[k] = choice.kept
        scale = torch.zeros(consumer.in_channels, dtype=torch.float64)
        scale[choice.kept] = choice.scale
        with torch.no_grad():
            consumer.weight.mul_(scale.to(consumer.weight.device, consumer.weight.dtype).view(1, -1, 1, 1))
    small, pruned_spec = apply_keep(work, spec, keep)
    return PrunedModel(pruned_spec, small, config, keep)
