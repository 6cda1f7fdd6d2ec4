"""Parameters and forward MACs of an architecture at any widths, without building it: read once from the
base architecture's modules and its prunable units (what surgery changes: a unit's width sets its producing
conv's outputs, its BN when the unit is plain, and its consumers' inputs), then a sum over layers. A conv's
MACs are its weights times its output pixels (fixed by the base's strides), a linear layer's its weights,
as the FLOPs counter counts them. Tests compare it with the models built."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from rethink.models import ArchSpec, build_model, prunable_units

from .patterns import output_sizes


@dataclass(frozen=True)
class _Layer:
    weights: int  # parameters that scale with inputs and outputs (a conv's or linear layer's weight), at base
    per_output: int  # parameters that scale with outputs only (a bias; a plain unit's BN scale and shift)
    macs: int  # at the base widths
    width_in: int | None  # the unit whose width sets its inputs, if any
    width_out: int | None  # the unit whose width sets its outputs, if any


@functools.cache
def _layers(spec: ArchSpec) -> tuple[tuple[_Layer, ...], int]:
    """The width-dependent layers of `spec` and its parameters that no width changes."""
    with torch.device("meta"):
        model = build_model(spec)
    units = prunable_units(spec, model)
    producer = {u.conv: u.width for u in units if u.conv is not None}
    plain_bn = {u.bn: u.width for u in units if u.conv is not None and u.bn}  # a selection unit's BN keeps its width
    consumer = {c: u.width for u in units for c in u.consumers}
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    pixels = {n: h * w for n, (h, w) in output_sizes(model, spec, convs).items()}
    layers, fixed = [], 0
    for name, m in model.named_modules():
        own = sum(p.numel() for p in m.parameters(recurse=False))
        if isinstance(m, nn.Conv2d | nn.Linear):
            weights = m.weight.numel()
            macs = weights * pixels.get(name, 1)
            layers.append(_Layer(weights, own - weights, macs, consumer.get(name), producer.get(name)))
        elif name in plain_bn:
            layers.append(_Layer(0, own, 0, None, plain_bn[name]))
        else:
            fixed += own
    return tuple(layers), fixed


def sizes_at(spec: ArchSpec, widths: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, forward MACs) of `spec` at `widths` (same model, other widths)."""
    layers, fixed = _layers(spec)
    base = spec.widths
    params, macs = fixed, 0
    for layer in layers:
        f_in = (widths[layer.width_in], base[layer.width_in]) if layer.width_in is not None else (1, 1)
        f_out = (widths[layer.width_out], base[layer.width_out]) if layer.width_out is not None else (1, 1)
        num, den = f_in[0] * f_out[0], f_in[1] * f_out[1]
        params += layer.weights * num // den + layer.per_output * f_out[0] // f_out[1]
        macs += layer.macs * num // den
    return params, macs
