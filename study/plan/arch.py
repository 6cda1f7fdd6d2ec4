"""What a spec builds before any data is read: its unpruned architecture for a dataset's shape, and its
pruning configuration."""

from __future__ import annotations

from typing import Protocol

from rethink.models.registry import ArchSpec, default_spec
from rethink.prune.registry import PruneConfig

from .spec import Spec


class Shaped(Protocol):
    """A dataset, or its shape (`rethink.data.DatasetShape`): what the architecture depends on."""

    in_channels: int
    num_classes: int
    input_size: int


def base_arch(spec: Spec, data: Shaped) -> ArchSpec:
    """The spec's unpruned architecture for the dataset's shape, with the spec's model options."""
    return default_spec(
        spec.model,
        data.in_channels,
        data.num_classes,
        data.input_size,
        spec.width_scale,
        spec.classifier,
        spec.bn_init,
        spec.conv_init,
    )


def prune_config(spec: Spec) -> PruneConfig:
    p = spec.prune
    return PruneConfig(
        p.method, p.ratio, p.variant, p.min_channels, p.scope, seed=spec.seed, like=p.like, rounds=p.rounds
    )
