"""Pruning as architecture search (Liu et al. 2019, Section 5): architectures of the same size as a pruned
one, trained from scratch to ask whether the pruned architecture itself is worth anything.

- `uniform`: every prunable layer keeps the same fraction of its channels (unstructured: the same density
  in every conv);
- `guided`: the pruned architecture's own group pattern (`rethink.prune.patterns`), every layer of a
  group at the group's mean kept fraction;
- `transferred`: the group pattern of another pruned architecture (another network or data set).

Each is rescaled by one factor so that its parameters (or FLOPs) match the pruned architecture's within
a tolerance (1%); an architecture is data: widths (an ArchSpec) or non-zero weights per conv."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rethink.flops import conv_macs, forward_flops, param_count
from rethink.models import ArchSpec, build_model
from rethink.models.external import is_external

from .library_arch import library_layout
from .patterns import (
    Pattern,
    PatternError,
    conv_groups,
    is_unstructured,
    pattern_of,
    uniform_pattern,
    width_groups,
)
from .registry import PrunedModel
from .sizes import sizes_at
from .solve import solve

KINDS = ("uniform", "guided", "transferred")
MATCHES = ("params", "flops")


@dataclass(frozen=True)
class DerivedArch:
    """An architecture matched to a pruned one's size, as data: its widths, and for unstructured pruning the
    non-zero weights of each conv (their places drawn at random when a model is built: `masks_for`)."""

    kind: str
    spec: ArchSpec
    match: str
    params: int  # non-zero parameters (all of them when structured)
    macs: int  # one image's forward MACs (non-zero conv weights only when unstructured)
    target_params: int  # the pruned architecture's
    target_macs: int
    kept: dict[str, int] | None = None  # unstructured: non-zero weights per conv weight
    pattern: Pattern | None = field(default=None, compare=False)

    @property
    def error(self) -> float:
        """Relative difference from the pruned architecture in the matched quantity."""
        got, want = (self.params, self.target_params) if self.match == "params" else (self.macs, self.target_macs)
        return got / want - 1

    def to_dict(self) -> dict:
        d = {
            "kind": self.kind,
            "arch": self.spec.to_dict(),
            "match": self.match,
            "params": self.params,
            "macs": self.macs,
            "target_params": self.target_params,
            "target_macs": self.target_macs,
            "error": self.error,
        }
        if self.kept is not None:
            d["kept"] = dict(self.kept)
        if self.pattern is not None:
            d["pattern"] = self.pattern.to_dict()
        return d


def size_of(pruned: PrunedModel) -> tuple[int, int]:
    """(non-zero parameters, forward MACs) of a pruned model: what a derived architecture is matched to."""
    shape = (pruned.spec.in_channels, pruned.spec.input_size, pruned.spec.input_size)
    if is_unstructured(pruned):
        total, per_conv = conv_macs(pruned.model, shape)
        kept = {n: int(m.sum()) for n, m in pruned.masks.items()}
        return param_count(pruned.model, nonzero=True), _masked_macs(total, per_conv, kept, dict(_numels(pruned)))
    return param_count(pruned.model), forward_flops(pruned.model, shape)


def _numels(pruned: PrunedModel):
    return ((n, m.numel()) for n, m in pruned.masks.items())


def _masked_macs(total: int, per_conv: dict[str, int], kept: dict[str, int], numel: dict[str, int]) -> int:
    return int(round(total - sum(per_conv[n] * (1 - kept[n] / numel[n]) for n in kept)))


def derive(
    kind: str,
    base_spec: ArchSpec,
    pruned: PrunedModel,
    pattern: Pattern | None = None,
    match: str = "params",
    tolerance: float = 0.01,
) -> DerivedArch:
    """The `kind` architecture at the pruned one's size: uniform (no pattern), or `pattern` (guided: the
    pruned one's own, transferred: another's) rescaled by one factor; refused beyond `tolerance`."""
    if kind not in KINDS:
        raise PatternError(f"unknown architecture kind {kind!r}; valid: {', '.join(KINDS)}")
    if match not in MATCHES:
        raise PatternError(f"match = {match!r}; valid: {', '.join(MATCHES)}")
    if is_external(base_spec.model):
        derived = _library_arch(kind, base_spec, pruned, match)
    else:
        derived = _registry_arch(kind, base_spec, pruned, pattern, match)
    if abs(derived.error) > tolerance:
        raise PatternError(
            f"{kind}: the closest {base_spec.model} found has {derived.params} parameters and {derived.macs} MACs, "
            f"{derived.error:+.2%} from the pruned architecture's {match} (tolerance {100 * tolerance:g}%); the "
            f"network is too small for one width step to stay within it: match the other quantity or a larger network"
        )
    return derived


def _library_arch(kind: str, base_spec: ArchSpec, pruned: PrunedModel, match: str) -> DerivedArch:
    """A library model's uniform or guided architecture over DepGraph's channel groups (`library_arch`); a
    transferred pattern would need another network's stages matched to these, which is not built yet."""
    if kind == "transferred":
        raise PatternError(
            f"the transferred architecture is built for the registry's models only; {base_spec.model} has uniform "
            f"and guided"
        )
    target_params, target_macs = size_of(pruned)
    target = target_params if match == "params" else target_macs
    spec, params, macs, kept = library_layout(kind, base_spec, pruned.config, pruned.model, target, match)
    pattern = Pattern({s: round(f, 6) for s, f in kept.items()}, False, kind)  # each stage's share of channels kept
    return DerivedArch(kind, spec, match, params, macs, target_params, target_macs, None, pattern)


def _registry_arch(kind, base_spec, pruned, pattern, match) -> DerivedArch:
    unstructured = is_unstructured(pruned)
    if kind == "uniform":
        pattern = uniform_pattern(base_spec, unstructured)
    elif pattern is None:
        pattern = pattern_of(base_spec, pruned, "pruned")
    if pattern.unstructured != unstructured:
        what = "weights (unstructured)" if pattern.unstructured else "channels (structured)"
        raise PatternError(
            f"the {kind} pattern from {pattern.source or 'its source'} is of {what}; this pruning is not"
        )
    target_params, target_macs = size_of(pruned)
    fit = _fit_weights if unstructured else _fit_widths
    return fit(kind, base_spec, pruned, pattern, match, target_params, target_macs)


def _fit_widths(kind, base_spec, pruned, pattern, match, target_params, target_macs) -> DerivedArch:
    groups = width_groups(base_spec)
    missing = sorted(set(groups) - set(pattern.fractions))
    if missing:
        raise PatternError(
            f"the {kind} pattern from {pattern.source or 'its source'} has no layer group {missing[0]!r} of "
            f"{base_spec.model} (it has {', '.join(sorted(pattern.fractions))}); take a pattern from a network with "
            f"the same stages"
        )
    ratios = [pattern.fractions[g] for g in groups]

    def counts(widths: tuple[int, ...]) -> tuple[int, int]:
        return sizes_at(base_spec, widths)

    cache: dict[tuple[int, ...], tuple[int, int]] = {}

    def count(widths: tuple[int, ...]) -> float:
        if widths not in cache:
            cache[widths] = counts(widths)
        return cache[widths][0 if match == "params" else 1]

    target = target_params if match == "params" else target_macs
    widths = solve(base_spec.widths, ratios, count, target, 1)
    count(widths)
    params, macs = cache[widths]
    spec = base_spec.with_widths(widths)
    return DerivedArch(kind, spec, match, params, macs, target_params, target_macs, None, pattern)


def _fit_weights(kind, base_spec, pruned, pattern, match, target_params, target_macs) -> DerivedArch:
    groups = conv_groups(base_spec)
    missing = sorted(set(groups.values()) - set(pattern.fractions))
    if missing:
        raise PatternError(
            f"the {kind} pattern from {pattern.source or 'its source'} has no conv group {missing[0]!r} of "
            f"{base_spec.model} (it has {', '.join(sorted(pattern.fractions))}); take a pattern from a network with "
            f"the same stages"
        )
    names = list(groups)
    numel = {n: m.numel() for n, m in pruned.masks.items()}
    shape = (base_spec.in_channels, base_spec.input_size, base_spec.input_size)
    total, per_conv = conv_macs(pruned.model, shape)
    fixed_params = target_params - sum(int(pruned.masks[n].sum()) for n in names)  # BN, linear, biases

    def sizes(kept: tuple[int, ...]) -> tuple[int, int]:
        k = dict(zip(names, kept, strict=True))
        return fixed_params + sum(kept), _masked_macs(total, per_conv, k, numel)

    def count(kept: tuple[int, ...]) -> float:
        return sizes(kept)[0 if match == "params" else 1]

    base = tuple(numel[n] for n in names)
    ratios = [pattern.fractions[groups[n]] for n in names]
    target = target_params if match == "params" else target_macs
    kept = solve(base, ratios, count, target, 1)
    params, macs = sizes(kept)
    return DerivedArch(
        kind, base_spec, match, params, macs, target_params, target_macs, dict(zip(names, kept, strict=True)), pattern
    )


def masks_for(derived: DerivedArch, seed: int) -> dict[str, torch.Tensor] | None:
    """Masks with each conv's non-zero weights at random places (seeded): the unstructured architecture
    as a model's masks; None for a structured one (its widths are the architecture)."""
    if derived.kept is None:
        return None
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in build_model(derived.spec).named_parameters()}
    masks = {}
    for name, k in derived.kept.items():
        flat = torch.zeros(shapes[name].numel(), dtype=torch.bool)
        flat[torch.randperm(flat.numel(), generator=g)[:k]] = True
        masks[name] = flat.view(shapes[name])
    return masks
