"""Iterative magnitude pruning (Frankle & Carbin 2019; Liu et al. 2019 Section 6): prune a share of the
remaining conv weights, rewind the survivors to their initial values, train again, and repeat. The
official code (cifar/lottery-ticket/weight-level: cifar_prune_iterative.py prunes the trained ticket of
the round before, lottery_ticket.py trains it from the stored init with the mask) is one round per call;
here `rounds` rounds reach the spec's final ratio, each removing the same share of what is left."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rethink.models import ArchSpec, build_model

from .magnitude import magnitude_masks
from .masks import apply_masks
from .registry import METHODS, PruneConfig, PrunedModel
from .surgery import PruneError


@dataclass(frozen=True)
class Round:
    """One retraining round: its cumulative sparsity and what its training cost (for honest accounting)."""

    index: int  # 2..rounds: round 1 is the base's own training
    sparsity: float  # share of the conv weights pruned while it trains
    images_seen: int
    forward_macs: int  # one image's forward MACs of the masked model it trained (non-zero only)


# (round index, the ticket: init weights with the round's masks applied, the masks) -> (trained, images seen)
Retrain = Callable[[int, nn.Module, dict[str, torch.Tensor]], tuple[nn.Module, int]]


def round_share(ratio: float, rounds: int) -> float:
    """The share of the remaining weights each round removes so that `rounds` rounds remove `ratio`."""
    return 1 - (1 - ratio) ** (1 / rounds)


def check_iterative(config: PruneConfig) -> None:
    if config.rounds > 1 and METHODS[config.method].structured:
        raise PruneError(f"rounds={config.rounds}: iterative pruning is for unstructured magnitude pruning only")
    if config.rounds > 1 and config.ratio is None:
        raise PruneError("iterative pruning needs a ratio: the share of conv weights removed after the last round")


def iterative_magnitude(
    base: nn.Module,
    spec: ArchSpec,
    config: PruneConfig,
    init_state: dict[str, torch.Tensor],
    retrain: Retrain,
    count_macs: Callable[[nn.Module], int],
) -> tuple[PrunedModel, list[Round]]:
    """`config.rounds` rounds of prune → rewind to `init_state` → `retrain`, then the last prune. The result
    carries the last trained ticket's weights under the final masks (what fine-tuning continues from); a
    lottery ticket of it is `init_state` under the same masks. `base` is left untouched."""
    check_iterative(config)
    share = round_share(config.ratio, config.rounds)
    trained, rounds = base, []
    masks = magnitude_masks(trained, share, config.scope)
    for k in range(2, config.rounds + 1):
        ticket = build_model(spec)
        ticket.load_state_dict(init_state)
        apply_masks(ticket, masks)
        sparsity = 1 - float(sum(m.sum() for m in masks.values())) / sum(m.numel() for m in masks.values())
        trained, seen = retrain(k, ticket, masks)
        trained.cpu().eval()
        rounds.append(Round(k, sparsity, seen, count_macs(trained)))
        masks = magnitude_masks(trained, share, config.scope, kept=masks)
    pruned = copy.deepcopy(trained)
    apply_masks(pruned, masks)
    return PrunedModel(spec, pruned, config, masks=masks), rounds
