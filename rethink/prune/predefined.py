"""An architecture the spec names instead of one a method derives: the official code's released models of
methods the project does not implement (ThiNet's VGG-GAP and -Tiny, the regression-based VGG-16-5x and
ResNet-50-2x, Sparse Structure Selection's ResNet-26/32/41). Nothing is inherited from the trained base
(`inherits=False`): only the scratch and architecture arms can train it."""

from __future__ import annotations

from dataclasses import replace

import torch

from rethink.models import ArchSpec, build_model, model_entry

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError
from .variants import variant_for


@register_method("predefined", families=("vgg", "resnet"), inherits=False)
def predefined(model, spec: ArchSpec, config: PruneConfig, data=None) -> PrunedModel:
    """The variant's architecture at a fresh init (seeded by `config.seed`); `model`'s weights are not read.
    Its widths are relative to the model's defaults: a base at a width scale gets the architecture at that scale."""
    if config.variant is None:
        raise PruneError("predefined needs a variant: the architecture's name (prune.variant)")
    v = variant_for(spec, config)
    target = v.arch_model or spec.model
    own = v.widths or model_entry(target).default_widths
    default = model_entry(spec.model).default_widths  # a spec's width_scale (a smoke run's) scales them alike
    if len(own) == len(spec.widths):
        widths = tuple(max(1, round(w * have / full)) for w, have, full in zip(own, spec.widths, default, strict=True))
    elif v.arch_model is not None:  # a model with fewer blocks than the base (SSS's): the base's overall scale
        scale = sum(spec.widths) / sum(default)
        widths = tuple(max(1, round(w * scale)) for w in own)
    else:
        raise PruneError(f"variant {config.variant!r} gives {len(own)} widths; {spec.model} has {len(spec.widths)}")
    small_spec = replace(spec, model=target, widths=widths, classifier=v.classifier or spec.classifier)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        small = build_model(small_spec)
    return PrunedModel(small_spec, small, config, keep={})
