"""Lottery ticket (Frankle & Carbin 2019): the pruned structure with the base model's initial (or
rewound) weights instead of its trained ones. Selection is by global magnitude (unstructured); any
other method's widths or masks can be given a ticket with `ticket_model`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from rethink.models import ArchSpec, build_model

from .magnitude import magnitude
from .masks import apply_masks
from .registry import PruneConfig, PrunedModel, register_method
from .surgery import apply_keep


@register_method("lottery", families=("vgg", "resnet", "preresnet", "densenet"), structured=False)
def lottery(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    return magnitude(model, spec, config, data)


def ticket_model(pruned: PrunedModel, base_spec: ArchSpec, init_state: dict[str, torch.Tensor]) -> nn.Module:
    """The pruned architecture carrying the base model's weights from `init_state` (init or epoch k)."""
    base = build_model(base_spec)
    base.load_state_dict(init_state)
    if pruned.masks is not None:
        ticket = copy.deepcopy(base)
        apply_masks(ticket, pruned.masks)
        return ticket
    ticket, _ = apply_keep(base, base_spec, pruned.keep)
    return ticket
