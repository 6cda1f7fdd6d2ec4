"""What a spec will cost before it runs: the training compute of every stage (base, each study's searched
and baseline trials, the confirmation and its bases, the final seeds) in MACs, from the architectures and
the layout alone: no data is read for CIFAR, nothing is trained, no run is made."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, replace

import torch

from rethink.arms import ARCH_ARMS, INHERITING_ARMS, pruned_flops
from rethink.data import DatasetShape, dataset_shape
from rethink.flops import forward_flops, nonzero_forward_flops, training_flops
from rethink.models.external import is_external
from rethink.models.registry import ArchSpec, build_model
from rethink.prune import apply_masks, round_share
from rethink.prune.magnitude import magnitude_masks
from rethink.prune.matched import derive
from rethink.prune.patterns import PatternError, pattern_of
from rethink.prune.registry import PrunedModel, needs_data, prune

from .arch import base_arch, prune_config, search_trains_base
from .cost_record import Cost, Stage, cost_from
from .kept import code_digest, keep, kept_file, read_kept
from .layout import (
    arch_budgets,
    baseline_trials,
    budgets,
    caps_of,
    epoch_range,
    reach_problems,
    study_arms,
)
from .spec import Spec, SpecError

# Methods whose per-layer widths (or weights) follow the trained base: before training, estimated.
FROM_TRAINED_WEIGHTS = ("slimming", "magnitude", "lottery")


def exact_architecture(spec: Spec) -> bool:
    """Whether the method's architecture (widths, or weights per layer) is known before the base trains."""
    p = spec.prune
    if p.method == "depgraph" or (p.method == "random" and p.like == "depgraph"):
        return p.scope in ("layer", "local") and p.max_ratio == 1.0  # one ratio per layer, whatever the weights
    return p.method not in FROM_TRAINED_WEIGHTS or (p.method == "magnitude" and p.scope == "layer")


ESTIMATE_IMAGES = 2  # calibration images the estimate's pruning reads (random ones: which channels is noise anyway)
ESTIMATE_SIDE = 32  # and their side, for the registry's models


def untrained_pruned(spec: Spec, data: DatasetShape):
    """The base at init and the spec's method applied to it (random scales for slimming, so its global
    threshold keeps about the ratio of every layer instead of breaking ties)."""
    arch, config = base_arch(spec, data), replace(prune_config(spec), rounds=1)
    return _untrained_pruned(spec, data, arch, config)


def _untrained_pruned(spec: Spec, data: DatasetShape, arch, config):
    model = _fresh_base(arch, spec.seed)
    if config.method == "slimming":
        gen = torch.Generator().manual_seed(spec.seed)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.01)
    calib = None
    if needs_data(config):  # the widths follow from the ratio, not from the images that score the channels
        # the registry's models run on any side: ThiNet's layer-by-layer passes over ResNet-50 at 32 px, not 224
        side = data.input_size if is_external(arch.model) else min(data.input_size, ESTIMATE_SIDE)
        size = (min(config.calibration_images, ESTIMATE_IMAGES), data.in_channels, side, side)
        calib = torch.rand(size, generator=torch.Generator().manual_seed(spec.seed))
    return model, arch, prune(model, arch, config, calib)


_BASE: dict[tuple, tuple[torch.nn.Module, torch.Tensor]] | None = None  # open `shared_bases`: the last base built


@contextlib.contextmanager
def shared_bases() -> Iterator[None]:
    """While open, an untrained base is built once per architecture and seed and copied for each estimate (a
    spec's operating points, a catalogue's specs: an ImageNet VGG-16 takes a second to initialise). One is kept
    at a time, and only while open: a study's own checks hold no half-gigabyte copy through days of training."""
    global _BASE
    outer = _BASE
    _BASE = {} if outer is None else outer
    try:
        yield
    finally:
        _BASE = outer


def _fresh_base(arch: ArchSpec, seed: int) -> torch.nn.Module:
    """`build_model(arch)` after `torch.manual_seed(seed)`, the global RNG state after it included (from the
    `shared_bases` copy when one is open)."""
    if _BASE is None:
        torch.manual_seed(seed)
        return build_model(arch)
    key = (arch, seed)
    if key not in _BASE:
        _BASE.clear()
        torch.manual_seed(seed)
        _BASE[key] = (build_model(arch), torch.get_rng_state())
    model, state = _BASE[key]
    torch.set_rng_state(state)
    return copy.deepcopy(model)


def _round_macs(model: torch.nn.Module, spec: Spec, data: DatasetShape) -> list[int]:
    """One image's forward MACs (non-zero weights) of each retraining round of iterative pruning (rounds
    2..R), from the untrained base pruned to each round's cumulative sparsity: an estimate."""
    config = prune_config(spec)
    share = round_share(config.ratio, config.rounds) if config.rounds > 1 else 0.0
    shape = (data.in_channels, data.input_size, data.input_size)
    out = []
    for k in range(2, config.rounds + 1):
        masked = copy.deepcopy(model)
        apply_masks(masked, magnitude_masks(model, 1 - (1 - share) ** (k - 1), config.scope))
        out.append(nonzero_forward_flops(masked, shape))
    return out


def check_architectures(spec: Spec) -> None:
    """Refuse, naming the field, a spec whose architecture arms cannot be matched to the pruned size, on the
    estimated pruned architecture of each setting (before anything trains; the trunk checks the real one)."""
    if set(spec.study.arms) & set(ARCH_ARMS):
        for level in spec.levels():
            spec_cost(level)


def architecture_macs(spec: Spec, arch: ArchSpec, pruned: PrunedModel) -> dict[str, int]:
    """Forward MACs of each architecture arm (Section 5) at the (estimated) pruned size; a size that cannot be
    matched is refused naming the field. `transferred` takes its pattern from `[arch] pattern_from`'s
    pruned architecture, estimated the same way."""
    arms = [a for a in spec.study.arms if a in ARCH_ARMS]
    pattern = None
    if "transferred" in arms:
        from .load import load_spec  # load checks a spec's cost, so it imports this module

        other = load_spec(spec.arch.pattern_from)
        _, other_arch, other_pruned = untrained_pruned(other, dataset_shape(other.dataset, other.data_root))
        pattern = pattern_of(other_arch, other_pruned, other.name)
    out = {}
    for arm in arms:
        try:
            d = derive(
                arm, arch, pruned, pattern if arm == "transferred" else None, spec.arch.match, spec.arch.tolerance
            )
        except PatternError as e:
            field = "arch.pattern_from" if arm == "transferred" and "pattern" in str(e) else "arch.match"
            raise SpecError(f"{field} ({arm} arm, on the estimated pruned architecture): {e}") from None
        out[arm] = d.macs
    return out


def _mean_epochs(low: int, high: int, log: bool) -> float:
    """The expected epochs of a trial sampled from [low, high] (uniform, or log-uniform)."""
    if high <= low:
        return float(low)
    if log:
        return (high - low) / math.log(high / low)
    return (low + high) / 2


def split_sizes(spec: Spec, data: DatasetShape) -> tuple[int, int]:
    """(search training images, final training images): the search holds out the validation fraction."""
    n_val = math.ceil(spec.val_fraction * data.n_train)
    return data.n_train - n_val, data.n_train


_COSTS: dict[tuple[str, DatasetShape], Cost] = {}  # by spec content: a catalogue and a check share one computation


def proxy_share(spec: Spec, data: DatasetShape) -> float:
    """A searched trial's training MACs on the spec's proxy, as a share of the same trial at full scale
    (classes taken as equally large)."""
    p = spec.proxy
    if p is None:
        return 1.0
    classes = 1.0 if p.classes is None else min(p.classes, data.num_classes) / data.num_classes
    side = 1.0 if p.resolution is None else min(1.0, p.resolution / data.input_size)
    return classes * side**2 * p.epochs


def spec_cost(spec: Spec, data: DatasetShape | None = None) -> Cost:
    """The compute of one setting, stage by stage. Searched trials count at the mean of their epoch range
    (every trial at its cap is the most it can cost); baselines at their own epochs. Kept in memory and on
    disk by content (`kept.py`: costs.json), so a second look builds nothing."""
    data = data or dataset_shape(spec.dataset, spec.data_root)
    key = (spec.model_dump_json(), data)
    if key not in _COSTS:
        path = kept_file(COSTS_FILE)
        disk_key = _disk_key(spec, data) if path else ""  # nothing kept: no key to compute
        kept = read_kept(path).get(disk_key, {})
        if kept.get("code") == code_digest() and isinstance(kept.get("cost"), dict):
            _COSTS[key] = cost_from(kept["cost"])
        else:
            with torch.random.fork_rng():  # the untrained base's init leaves the caller's random state alone
                _COSTS[key] = _spec_cost(spec, data)
            entry = {"code": code_digest(), "spec": spec.name, "cost": asdict(_COSTS[key])}
            keep(path, disk_key, entry, stale=lambda e: e.get("code") != code_digest())
    return _COSTS[key]


COSTS_FILE = "costs.json"


def _disk_key(spec: Spec, data: DatasetShape) -> str:
    """What a cost depends on besides the code: the spec's content, the data's shape, and the content of the
    spec `[arch] pattern_from` names (the transferred arm takes its pattern)."""
    parts = [spec.model_dump_json(), asdict(data)]
    if spec.arch.pattern_from:
        from .load import load_spec  # load checks a spec's cost, so it imports this module

        parts.append(load_spec(spec.arch.pattern_from).model_dump_json())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _spec_cost(spec: Spec, data: DatasetShape) -> Cost:
    model, arch, pruned = untrained_pruned(spec, data)
    shape = (data.in_channels, data.input_size, data.input_size)
    base_fwd, pruned_fwd = forward_flops(model, shape), pruned_flops(pruned)
    n_search, n_final = split_sizes(spec, data)
    base_config = spec.base.train_config(spec.seed)
    round_macs = _round_macs(model, spec, data)

    def rounds(n: int) -> float:  # the pruning's own retraining, on n images per epoch
        return sum(training_flops(m, n * base_config.epochs) for m in round_macs)

    caps = budgets(base_config, base_fwd, pruned_fwd, n_search, rounds(n_search))
    arch_macs = architecture_macs(spec, arch, pruned)  # refused here when a size cannot be matched
    arch_caps = {a: arch_budgets(caps, base_config, base_fwd, m, n_search) for a, m in arch_macs.items()}

    def epoch(arm: str, n: int) -> float:
        return training_flops(base_fwd if arm == "unpruned" else arch_macs.get(arm, pruned_fwd), n)

    stages = [Stage("base (search split)", 1, caps.base_train)]
    if spec.weights:  # loaded and scored, not trained
        stages = [Stage("base (the weights file: not trained)", 0, 0.0)]
    elif not search_trains_base(spec):
        stages = [Stage("base (search: none, no arm inherits from it)", 0, 0.0)]
    if round_macs:
        stages.append(Stage("pruning rounds (search split)", len(round_macs), caps.prune_train))
    picks: list[tuple[str, float]] = []  # (arm, expected epochs) of each tuned pick, for the later stages
    baselines: dict[tuple[str, str], float] = {}  # (arm, name) -> epochs: one final row each
    for key in study_arms(spec):
        arm = key.partition("@")[0]
        arm = "scratch-b" if arm == "scratch" else arm
        found = epoch_range(spec, key, caps_of(caps, arch_caps, key))
        mean = _mean_epochs(*found) if found else base_config.epochs
        extra = baseline_trials(spec, key, caps_of(caps, arch_caps, key), base_config)
        macs = spec.study.n_trials * mean * epoch(arm, n_search)
        macs += sum(b.params.get("epochs", mean) * epoch(arm, n_search) for b in extra)
        macs *= proxy_share(spec, data)  # at most: the hpo pruner stops some proxy trials early
        stages.append(Stage(f"study {key}", spec.study.n_trials + len(extra), macs))
        picks.append((arm, mean))
        baselines |= {(arm, b.name): b.params.get("epochs", mean) for b in extra}
    sel = spec.select
    if sel.seeds and sel.top_k:
        runs = len(picks) * sel.top_k * sel.seeds
        macs = sum(sel.top_k * sel.seeds * m * epoch(a, n_search) for a, m in picks)
        stages.append(Stage("confirmation", runs, macs))
        if sel.n_bases and set(spec.study.arms) & set(INHERITING_ARMS):
            runs = sel.n_bases * (1 + len(round_macs))
            stages.append(Stage("confirmation bases", runs, sel.n_bases * caps.inherited))
    seeds = spec.final.seeds
    final_base = training_flops(base_fwd, n_final * base_config.epochs)
    rows = [*picks, *((a, e) for (a, _), e in baselines.items())]
    n_bases = 0 if spec.weights else 1 if spec.final.share_base else seeds  # one base serves every seed
    stages.append(Stage("final: bases (train+val)", n_bases, n_bases * final_base))
    if round_macs:
        stages.append(Stage("final: pruning rounds", n_bases * len(round_macs), n_bases * rounds(n_final)))
    stages.append(Stage("final: every row", seeds * len(rows), seeds * sum(m * epoch(a, n_final) for a, m in rows)))
    exact = exact_architecture(spec)
    problems = tuple(reach_problems(spec, caps, arch_caps))
    return Cost(spec.name, data, base_fwd, pruned_fwd, exact, caps, tuple(stages), problems)
