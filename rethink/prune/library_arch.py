"""Section 5's architectures for a library model, over the channel groups DepGraph prunes (the classifier,
`prune.ignore` and a ViT's token width and heads stay whole, as for the pruned model):

- `uniform`: every group keeps the same share of its channels;
- `guided`: every group keeps its stage's mean kept share in the pruned model (a stage: the groups whose
  root layer writes maps of one size; linear layers' groups are one stage), times one factor.

The factor is the one at which the parameters (or MACs) come closest to the pruned model's; the groups between
the two nearest factors step one channel apart, as for the registry's models (`solve`). Each try prunes a copy
of a fresh model (which channels go is drawn at random: only shapes count). `round_to` does not apply: the
widths are set exactly."""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, replace

import torch
from torch import nn

from rethink.flops import forward_flops, param_count
from rethink.models import ArchSpec, build_model
from rethink.models.layout import record_layout
from rethink.models.registry import canonical_json

from .depgraph import _tp, check_layers, make_pruner, prune_step
from .patterns import output_sizes
from .registry import PruneConfig
from .solve import solve


@dataclass(frozen=True)
class Group:
    """Channels DepGraph removes together: the layers whose outputs they are, how many, the stage."""

    layers: tuple[str, ...]
    channels: int
    root: str  # the conv or linear layer DepGraph found the group from
    stage: str  # "16x16/conv": its root writes 16×16 maps; "linear": a linear layer's


def channel_groups(full: nn.Module, spec: ArchSpec, config: PruneConfig) -> tuple[list[Group], list[str]]:
    """The channel groups DepGraph may prune, in the order it finds them, and the layers it leaves whole."""
    model = copy.deepcopy(full)
    pruner = make_pruner(model, spec, config, _tp().importance.RandomImportance())
    names = {m: n for n, m in model.named_modules()}
    ignored = [names[m] for m in pruner.ignored_layers if m in names]
    graph, found = pruner.DG, []
    for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        out_of = [d.target.module for d, _ in group if graph.is_out_channel_pruning_fn(d.handler)]
        layers = tuple(sorted({names[m] for m in out_of if m in names}))  # not the graph's own ops (an add)
        root = group[0][0].target.module
        if layers:
            found.append((layers, graph.get_out_channels(root), names[root]))
    modules = dict(full.named_modules())
    convs = [r for _, _, r in found if isinstance(modules[r], nn.Conv2d)]
    sizes = output_sizes(full, spec, convs)
    stage = {n: f"{sizes[n][0]}x{sizes[n][1]}/conv" for n in convs}
    return [Group(ls, c, r, stage.get(r, "linear")) for ls, c, r in found], ignored


def _cut(full: nn.Module, spec: ArchSpec, config: PruneConfig, groups, ignored: list[str], widths: tuple[int, ...]):
    """`full` with each group cut to its width (which channels go is drawn at random: only shapes count)."""
    model = copy.deepcopy(full)
    modules = dict(model.named_modules())
    ratios = {
        modules[n]: 1 - (w + 0.5) / g.channels if w < g.channels else 0.0
        for g, w in zip(groups, widths, strict=True)
        for n in g.layers
    }
    pruner = make_pruner(
        model, spec, config, _tp().importance.RandomImportance(), ratios, [modules[n] for n in ignored]
    )
    prune_step(pruner, model, spec)
    return model


def stage_shares(groups: list[Group], pruned: nn.Module) -> dict[str, float]:
    """Each stage's mean kept share of its groups' channels in `pruned` (the guided pattern)."""
    modules = dict(pruned.named_modules())
    shares: dict[str, list[float]] = {}
    for g in groups:
        m = modules[g.root]
        shares.setdefault(g.stage, []).append(
            (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features) / g.channels
        )
    return {s: sum(v) / len(v) for s, v in shares.items()}


# (parameters, forward MACs) of each set of group widths cut from a model (its spec and the cutting config):
# the cost check, the trunk and every final seed's base solve for nearby targets on the same model
_SIZES: dict[tuple[ArchSpec, str], dict[tuple[int, ...], tuple[int, int]]] = {}


def library_layout(
    kind: str, spec: ArchSpec, config: PruneConfig, pruned: nn.Module, target: int, match: str
) -> tuple[ArchSpec, int, int, dict[str, float]]:
    """(the `kind` architecture ("uniform" or "guided") as `spec` with a layout, its parameters, its forward
    MACs, each stage's kept share) whose parameters (`match` "params") or MACs ("flops") come closest to
    `target`, the pruned model's."""
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    config = replace(config, scope="local", ratio=0.0, steps=1, max_ratio=1.0, round_to=None)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # the channels drawn do not matter; the caller's RNG is left as it was
        full = build_model(spec)
        groups, ignored = channel_groups(full, spec, config)
        pattern = stage_shares(groups, pruned) if kind == "guided" else {}
        counted = _SIZES.setdefault((spec, repr(config)), {})  # shared by every derive of this model

        def count(widths: tuple[int, ...]) -> float:
            if widths not in counted:
                small = _cut(full, spec, config, groups, ignored, widths)
                counted[widths] = (param_count(small), forward_flops(small, shape))
            return counted[widths][0 if match == "params" else 1]

        base = tuple(g.channels for g in groups)
        widths = solve(base, [pattern.get(g.stage, 1.0) for g in groups], count, target, 1)
        small = _cut(full, spec, config, groups, ignored, widths)
        check_layers(small, spec)
        layout = record_layout(small, full)
    params, macs = param_count(small), forward_flops(small, shape)
    kept: dict[str, list[float]] = {}
    for g, w in zip(groups, widths, strict=True):
        kept.setdefault(g.stage, []).append(w / g.channels)
    return (
        replace(spec, layout=canonical_json(layout)),
        params,
        macs,
        {s: statistics.median(v) for s, v in kept.items()},
    )
