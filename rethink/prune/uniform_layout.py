"""Section 5's `uniform` architecture for a library model: every channel group DepGraph prunes keeps the
same share of its channels (the classifier, `prune.ignore` and a ViT's token width and heads stay whole, as
for the pruned model), the share at which the parameters (or MACs) come closest to the pruned model's; the
groups between the two nearest shares step one channel apart, as for the registry's models (`solve`). Each
try prunes a copy of a fresh model (which channels go is drawn at random: only shapes count). `round_to`
does not apply: the widths are set exactly."""

from __future__ import annotations

import copy
import statistics
from dataclasses import replace

import torch
from torch import nn

from rethink.flops import forward_flops, param_count
from rethink.models import ArchSpec, build_model
from rethink.models.layout import record_layout
from rethink.models.registry import canonical_json

from .depgraph import _step, _tp, check_layers, make_pruner
from .registry import PruneConfig
from .solve import solve

Group = tuple[tuple[str, ...], int]  # the layers whose outputs a group of coupled channels sets; its channels


def _groups(full: nn.Module, spec: ArchSpec, config: PruneConfig) -> tuple[list[Group], list[str]]:
    """The channel groups DepGraph may prune, in the order it finds them, and the layers it leaves whole."""
    model = copy.deepcopy(full)
    pruner = make_pruner(model, spec, config, _tp().importance.RandomImportance())
    names = {m: n for n, m in model.named_modules()}
    ignored = [names[m] for m in pruner.ignored_layers if m in names]
    graph, out = pruner.DG, []
    for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        out_of = [d.target.module for d, _ in group if graph.is_out_channel_pruning_fn(d.handler)]
        layers = tuple(sorted({names[m] for m in out_of if m in names}))  # not the graph's own ops (an add)
        out.append((layers, graph.get_out_channels(group[0][0].target.module)))
    return [g for g in out if g[0]], ignored


def _cut(full: nn.Module, spec: ArchSpec, config: PruneConfig, groups, ignored: list[str], widths: tuple[int, ...]):
    """`full` with each group cut to its width (which channels go is drawn at random: only shapes count)."""
    model = copy.deepcopy(full)
    modules = dict(model.named_modules())
    ratios = {
        modules[n]: 1 - (w + 0.5) / c if w < c else 0.0
        for (layers, c), w in zip(groups, widths, strict=True)
        for n in layers
    }
    keep = [modules[n] for n in ignored]
    pruner = make_pruner(model, spec, config, _tp().importance.RandomImportance(), ratios, keep)
    _step(pruner, model, spec)
    return model


def uniform_layout(spec: ArchSpec, config: PruneConfig, target: int, match: str) -> tuple[ArchSpec, int, int, float]:
    """(the uniform architecture as `spec` with a layout, its parameters, its forward MACs, the share of its
    channels each group keeps) whose parameters (`match` "params") or MACs ("flops") come closest to `target`."""
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    config = replace(config, scope="local", ratio=0.0, steps=1, max_ratio=1.0, round_to=None)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # the channels drawn do not matter; the caller's RNG is left as it was
        full = build_model(spec)
        groups, ignored = _groups(full, spec, config)
        counted: dict[tuple[int, ...], tuple[int, int]] = {}

        def count(widths: tuple[int, ...]) -> float:
            if widths not in counted:
                small = _cut(full, spec, config, groups, ignored, widths)
                counted[widths] = (param_count(small), forward_flops(small, shape))
            return counted[widths][0 if match == "params" else 1]

        base = tuple(c for _, c in groups)
        widths = solve(base, [1.0] * len(base), count, target, 1)
        small = _cut(full, spec, config, groups, ignored, widths)
        check_layers(small, spec)
        layout = record_layout(small, full)
    params, macs = param_count(small), forward_flops(small, shape)
    kept = statistics.median(w / c for w, c in zip(widths, base, strict=True))  # each group's, up to a channel
    return replace(spec, layout=canonical_json(layout)), params, macs, kept
