"""A pruned library model's architecture as data (JSON, never a pickled module).

The layout lists the layers whose tensors or size attributes differ from the unpruned model: for each,
the new shape of every changed parameter or buffer and the new value of every changed size attribute
(`out_channels`, `groups`, `num_features`, `normalized_shape`, `num_heads`, ...). Applying it to a freshly
built unpruned model gives the pruned architecture with a fresh initialisation: each changed tensor keeps
the leading part of its fresh draw, so every weight comes from the library's own initialiser and none is
inherited. Where that initialiser scales with a layer's fan, the cut conv and linear weights are rescaled
to the scale it gives at their new fan (`rethink.models.init_rule`).
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import nn

from .init_rule import FAN_LAYERS, fan_sizes, init_rules, rescale
from .registry import ModelError

Layout = dict[str, dict[str, dict]]


def _size_like(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, (tuple, list)) and bool(v) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


def _tensors(m: nn.Module):
    return chain(m.named_parameters(recurse=False), m.named_buffers(recurse=False))


def record_layout(pruned: nn.Module, full: nn.Module) -> Layout:
    """What differs between `pruned` and the unpruned `full` it came from, layer by layer."""
    reference = dict(full.named_modules())
    layout: Layout = {}
    for name, m in pruned.named_modules():
        ref = reference.get(name)
        if ref is None or type(ref) is not type(m):
            raise ModelError(f"pruned layer {name!r} ({type(m).__name__}) is not a layer of the unpruned model")
        ref_tensors = dict(_tensors(ref))
        shapes = {n: list(t.shape) for n, t in _tensors(m) if n in ref_tensors and t.shape != ref_tensors[n].shape}
        attrs = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in vars(m).items()
            if not k.startswith("_") and _size_like(v) and vars(ref).get(k) != v
        }
        if shapes or attrs:
            layout[name] = {"attrs": attrs, "shapes": shapes}
    return layout


def apply_layout(model: nn.Module, layout: Layout, label: str = "the model") -> nn.Module:
    """Cut a freshly built unpruned model to `layout` in place (and return it), each cut conv and linear
    weight at the scale the library's initialiser gives its new fan."""
    rules = init_rules(model)
    fans = {n: fan_sizes(m) for n, m in model.named_modules() if isinstance(m, FAN_LAYERS)}
    for name, entry in layout.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"layout names layer {name!r}, which {label} does not have") from None
        for k, v in entry.get("attrs", {}).items():
            old = getattr(m, k, None)
            if not _size_like(old):
                raise ModelError(f"layout sets {name}.{k}, which is not a size of {type(m).__name__}")
            setattr(m, k, tuple(v) if isinstance(old, tuple) else v)
        for n, shape in entry.get("shapes", {}).items():
            _cut(m, name, n, shape)
        if name in fans and "weight" in entry.get("shapes", {}) and type(m) in rules:
            with torch.no_grad():
                m.weight.mul_(rescale(rules[type(m)], fans[name], fan_sizes(m)))
    return model


def _cut(m: nn.Module, name: str, n: str, shape: list[int]) -> None:
    is_param = n in m._parameters
    t = m._parameters.get(n) if is_param else m._buffers.get(n)
    if t is None:
        raise ModelError(f"layout names tensor {name}.{n}, which the layer does not have")
    if len(shape) != t.dim() or any(s < 1 or s > d for s, d in zip(shape, t.shape, strict=True)):
        raise ModelError(f"layout shape {shape} of {name}.{n} does not fit its unpruned shape {list(t.shape)}")
    with torch.no_grad():
        cut = t.detach()[tuple(slice(0, s) for s in shape)].clone()
    if is_param:
        m._parameters[n] = nn.Parameter(cut, requires_grad=t.requires_grad)
    else:
        m._buffers[n] = cut


def out_shares(layout: Layout, full: nn.Module) -> list[float]:
    """The share of its outputs each conv and linear layer of `full` keeps under `layout`, in module order."""
    shares = []
    for name, m in full.named_modules():
        attr = "out_channels" if isinstance(m, nn.Conv2d) else "out_features" if isinstance(m, nn.Linear) else None
        if attr:
            shares.append(layout.get(name, {}).get("attrs", {}).get(attr, getattr(m, attr)) / getattr(m, attr))
    return shares
