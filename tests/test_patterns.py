"""Section 5's architectures: uniform, guided and transferred, each matched to a pruned architecture's
size. Every count is checked on the model actually built from the record (real weights, masks drawn),
not on the numbers the solver reports."""

import pytest
import torch

from rethink.flops import forward_flops, nonzero_forward_flops, param_count
from rethink.models import MODELS, build_model, default_spec
from rethink.prune import PruneConfig, PrunedModel, apply_masks, prune
from rethink.prune.matched import derive, masks_for
from rethink.prune.patterns import (
    PatternError,
    conv_groups,
    pattern_of,
    width_groups,
)
from rethink.prune.sizes import sizes_at

# One model per family (the smallest of each, so the suite stays fast) and where its pattern comes from
# for `transferred`: another depth of the family, or the same network on another data set (100 classes).
FAMILIES = {
    "vgg11": ("vgg16", 10),
    "resnet20": ("resnet32", 10),
    "preresnet20": ("preresnet20", 100),
    "densenet16": ("densenet40", 10),
}
RATIOS = (0.3, 0.5, 0.7)


def _pruned_widths(name: str, ratio: float, seed: int, classes: int = 10) -> tuple:
    """A non-uniform structured pruning at about `ratio` of the channels: each layer keeps a random share
    around 1 - ratio (as a global criterion leaves them)."""
    spec = default_spec(name, 3, classes, 32)
    g = torch.Generator().manual_seed(seed)
    keep = (1 - ratio) * (0.5 + torch.rand(len(spec.widths), generator=g))
    widths = tuple(max(1, min(w, round(w * float(k)))) for w, k in zip(spec.widths, keep, strict=True))
    small = spec.with_widths(widths)
    return spec, PrunedModel(small, build_model(small), PruneConfig("l1-norm", ratio))


def _counted(derived, seed: int = 0) -> tuple[int, int]:
    """(parameters, MACs) of the model built from the record: non-zero ones when it has masks."""
    model = build_model(derived.spec)
    shape = (derived.spec.in_channels, derived.spec.input_size, derived.spec.input_size)
    masks = masks_for(derived, seed)
    if masks is None:
        return param_count(model), forward_flops(model, shape)
    with torch.no_grad():  # no weight is zero by chance where the mask keeps it
        for name, p in model.named_parameters():
            if name in masks:
                p.copy_(torch.where(p == 0, torch.ones_like(p), p))
    apply_masks(model, masks)
    return param_count(model, nonzero=True), nonzero_forward_flops(model, shape)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_structured_uniform_guided_and_transferred_match_the_pruned_size(name, ratio):
    match = "flops" if ratio == 0.5 else "params"
    spec, pruned = _pruned_widths(name, ratio, seed=1)
    source_name, classes = FAMILIES[name]
    source_spec, source = _pruned_widths(source_name, ratio, seed=2, classes=classes)
    transferred = pattern_of(source_spec, source, f"{source_name}/{classes}")
    target = (param_count(pruned.model), forward_flops(pruned.model, (3, 32, 32)))
    made = {}
    for kind, pattern in (("uniform", None), ("guided", None), ("transferred", transferred)):
        d = made[kind] = derive(kind, spec, pruned, pattern, match=match)
        params, macs = _counted(d)
        assert (params, macs) == (d.params, d.macs), kind
        assert (d.target_params, d.target_macs) == target
        got, want = (params, target[0]) if match == "params" else (macs, target[1])
        assert abs(got / want - 1) <= 0.01, (kind, got, want)
        assert all(1 <= w <= b for w, b in zip(d.spec.widths, spec.widths, strict=True))
    uniform = made["uniform"]
    kept = [w / b for w, b in zip(uniform.spec.widths, spec.widths, strict=True)]
    # every layer at one fraction, up to the rounding of a width and the one-layer steps that match the size
    assert max(kept) - min(kept) <= max(1.5 / b for b in spec.widths) + 1e-9


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_unstructured_uniform_and_guided_sparsity_match_the_remaining_weights(name, ratio):
    match = "flops" if ratio == 0.5 else "params"
    scale = 0.5 if name == "vgg11" else 1.0  # a weight is the step here: half-width VGGs keep the suite fast
    spec = default_spec(name, 3, 10, 32, scale)
    torch.manual_seed(0)
    pruned = prune(build_model(spec), spec, PruneConfig("magnitude", ratio))
    source_spec = default_spec(FAMILIES[name][0], 3, FAMILIES[name][1], 32, scale)
    torch.manual_seed(1)
    source = prune(build_model(source_spec), source_spec, PruneConfig("magnitude", 0.9 - ratio / 2))
    target = (param_count(pruned.model, nonzero=True), nonzero_forward_flops(pruned.model, (3, 32, 32)))
    made = {}
    for kind, pattern in (("uniform", None), ("guided", None), ("transferred", pattern_of(source_spec, source))):
        d = made[kind] = derive(kind, spec, pruned, pattern, match=match)
        params, macs = _counted(d)
        assert (params, macs) == (d.params, d.macs), kind
        got, want = (params, target[0]) if match == "params" else (macs, target[1])
        assert abs(got / want - 1) <= 0.01, (kind, got, want)
    uniform, guided = made["uniform"], made["guided"]
    numel = {n: m.numel() for n, m in pruned.masks.items()}
    densities = [k / numel[n] for n, k in uniform.kept.items()]
    assert max(densities) - min(densities) <= max(2 / n for n in numel.values()) + 1e-9  # the same everywhere
    groups = conv_groups(spec)
    for g in set(groups.values()):  # guided: one density per group, in the pruned network's proportions
        in_group = [n for n in groups if groups[n] == g]
        ds = [guided.kept[n] / numel[n] for n in in_group]
        assert max(ds) - min(ds) <= max(2 / numel[n] for n in in_group) + 1e-9


def test_groups_are_stages_by_feature_map_size_and_role():
    assert width_groups(default_spec("vgg11")) == tuple(
        f"{s}x{s}/conv" for s in (32, 16, 8, 8, 4, 4, 2, 2)
    )  # VGG-11: 1, 1, 2, 2, 2 convs per stage
    pre = width_groups(default_spec("preresnet20"))
    assert pre[:3] == ("32x32/select", "32x32/conv", "32x32/conv") and pre[-1] == "8x8/select"
    assert set(conv_groups(default_spec("resnet20")).values()) == {"32x32/k3", "16x16/k3", "8x8/k3"}


def test_a_pattern_without_this_networks_stages_is_refused_naming_the_group():
    spec, pruned = _pruned_widths("vgg11", 0.5, seed=1)
    small = default_spec("vgg11", 3, 10, 16)  # 16×16 images: its stages are 16 … 1
    small_pruned = PrunedModel(small.with_widths(pruned.spec.widths), pruned.model, pruned.config)
    foreign = pattern_of(small, small_pruned, "vgg11 on 16x16")
    with pytest.raises(PatternError, match=r"vgg11 on 16x16 has no layer group '32x32/conv' of vgg11"):
        derive("transferred", spec, pruned, foreign)


def test_a_size_no_width_step_can_reach_is_refused_with_the_tolerance():
    spec = default_spec("vgg11", 3, 10, 32, 0.05)  # widths 3 … 26: one channel moves the size by percents
    pruned = PrunedModel(spec.with_widths((1, 1, 13, 1, 26, 1, 26, 1)), None, PruneConfig("l1-norm", 0.5))
    pruned.model = build_model(pruned.spec)
    with pytest.raises(PatternError, match=r"uniform: .* from the pruned architecture's params \(tolerance 0\.1%\)"):
        derive("uniform", spec, pruned, tolerance=0.001)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sizes_without_building_equal_the_built_models_counts(name):
    """Every registered model: parameters and MACs at random widths, read from the base's layers, equal the
    counts of the model built at those widths (what the size matching relies on)."""
    spec = default_spec(name, 3, 100, 32)
    g = torch.Generator().manual_seed(len(name))
    for _ in range(2):
        widths = tuple(int(torch.randint(1, w + 1, (1,), generator=g)) for w in spec.widths)
        with torch.device("meta"):
            model = build_model(spec.with_widths(widths))
        assert sizes_at(spec, widths) == (param_count(model), forward_flops(model, (3, 32, 32)))
