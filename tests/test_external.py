"""Library models (timm:, torchvision:) pruned by DepGraph: built without downloads, pruned with the named
criterion, recorded as JSON and rebuilt from the record with a fresh initialisation."""

import copy
import json
import statistics
import warnings
from dataclasses import replace

import pytest
import torch
from torch import nn

pytest.importorskip("timm", reason="the 'models' extra (timm, torch-pruning) is not installed")
pytest.importorskip("torch_pruning", reason="the 'models' extra (timm, torch-pruning) is not installed")

from rethink.flops import forward_flops, param_count  # noqa: E402
from rethink.models import ArchSpec, ModelError, build_model, default_spec  # noqa: E402
from rethink.models.layout import apply_layout, out_shares  # noqa: E402
from rethink.prune import PruneConfig, PruneError, needs_data, prune  # noqa: E402
from rethink.prune.depgraph import CRITERIA, depgraph, finish, importance, make_pruner, prune_step  # noqa: E402
from rethink.prune.library_arch import channel_groups, stage_shares  # noqa: E402
from rethink.prune.matched import derive  # noqa: E402
from rethink.prune.patterns import PatternError  # noqa: E402
from rethink.prune.random_control import random_like  # noqa: E402

warnings.filterwarnings("ignore", message=".*non-singleton.*")

# a ResNet, a MobileNet, an EfficientNet, a ConvNeXt, a ViT, a RegNet: both libraries, at CIFAR's 32 px
SIX = {
    "torchvision:resnet18": None,
    "timm:mobilenetv3_small_050": None,
    "timm:efficientnet_b0": None,
    "timm:convnext_atto": None,
    "timm:vit_tiny_patch16_224": {"img_size": 32, "patch_size": 4},
    "timm:regnetx_002": None,
}


def _spec(name, args=None, classes=10):
    return default_spec(name, 3, classes, 32, model_args=args)


def _weights(model):
    return {k: v for k, v in model.state_dict().items() if v.dim() >= 2}


@pytest.mark.parametrize("criterion", ["l1", "taylor"])
@pytest.mark.parametrize("name", list(SIX))
def test_six_library_models_prune_record_and_rebuild_fresh(name, criterion):
    torch.manual_seed(0)
    spec = _spec(name, SIX[name])
    model = build_model(spec)
    images = torch.randn(4, 3, 32, 32)
    pruned = prune(model, spec, PruneConfig("depgraph", 0.5, criterion=criterion, scope="local"), images)
    assert param_count(pruned.model) < 0.8 * param_count(model)  # half the channels of every pruned group
    assert forward_flops(pruned.model, (3, 32, 32)) < forward_flops(model, (3, 32, 32))
    # the record is JSON data; the scratch arms rebuild the architecture from it alone
    record = json.loads(json.dumps(pruned.spec.to_dict()))
    assert isinstance(record["layout"], dict) and record["layout"]
    torch.manual_seed(1)
    rebuilt = build_model(ArchSpec.from_dict(record))
    shapes = {k: v.shape for k, v in pruned.model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert param_count(rebuilt) == param_count(pruned.model)
    inherited = [k for k, v in _weights(rebuilt).items() if torch.equal(v, pruned.model.state_dict()[k])]
    assert not inherited, f"weights inherited by the scratch rebuild: {inherited[:3]}"
    for m in (pruned.model, rebuilt):
        m.train()
        out = m(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10)
        out.logsumexp(1).sum().backward()
        grads = [p.grad for p in m.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_a_rebuild_is_a_fresh_draw_of_the_library_init_and_repeats_under_a_seed():
    spec = _spec("timm:resnet18")
    pruned = prune(build_model(spec), spec, PruneConfig("depgraph", 0.3, scope="local"))
    torch.manual_seed(5)
    a = build_model(pruned.spec)
    torch.manual_seed(5)
    b = build_model(pruned.spec)
    torch.manual_seed(6)
    c = build_model(pruned.spec)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    # BatchNorm starts as the library starts it; a kept conv keeps the leading part of its fresh draw
    assert torch.equal(a.bn1.weight, torch.ones_like(a.bn1.weight))
    assert a.conv1.weight.shape[0] == int(64 * 0.7)  # Torch-Pruning keeps int(n * (1 - ratio)), as Li et al.


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_prunes_a_resnet(criterion):
    spec = _spec("timm:resnet18")
    model = build_model(spec)
    config = PruneConfig("depgraph", 0.4, criterion=criterion, scope="global" if criterion == "lamp" else "local")
    images = torch.randn(4, 3, 32, 32) if needs_data(config) else None
    assert needs_data(config) == (criterion in ("taylor", "hessian"))
    pruned = prune(model, spec, config, images)
    widths = [m.out_channels for m in pruned.model.modules() if isinstance(m, nn.Conv2d)]
    assert min(widths) >= 1 and sum(widths) < sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    assert pruned.model.fc.out_features == 10  # the classifier is never pruned


def test_local_scope_keeps_int_of_each_layer_and_global_scope_ranks_across_layers():
    torch.manual_seed(0)
    spec = _spec("timm:resnet18")
    model = build_model(spec)
    local = prune(model, spec, PruneConfig("depgraph", 0.5, scope="local"))
    assert local.model.layer1[0].conv1.out_channels == 32 and local.model.layer4[0].conv1.out_channels == 256

    def lost(pruned):
        return max(
            1 - m.out_channels / model.get_submodule(n).out_channels
            for n, m in pruned.model.named_modules()
            if isinstance(m, nn.Conv2d)
        )

    uncapped = prune(model, spec, PruneConfig("depgraph", 0.5, criterion="lamp", scope="global"))
    capped = prune(model, spec, PruneConfig("depgraph", 0.5, criterion="lamp", scope="global", max_ratio=0.6, steps=10))
    assert lost(uncapped) > 0.7 and lost(capped) < 0.65  # the cap binds between steps (a step may pass it a little)
    kept = [
        m.out_channels / model.get_submodule(n).out_channels
        for n, m in capped.model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    assert len({round(k, 3) for k in kept}) > 2  # global: widths differ across layers
    rounded = prune(model, spec, PruneConfig("depgraph", 0.3, scope="local", round_to=8))
    widths = [m.out_channels for m in rounded.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and rounded.model.conv1.out_channels in (40, 48)  # 44 rounded


def test_iterative_steps_reach_the_same_ratio():
    spec = _spec("timm:resnet18")
    model = build_model(spec)
    one = prune(model, spec, PruneConfig("depgraph", 0.5, scope="local"))
    three = prune(model, spec, PruneConfig("depgraph", 0.5, scope="local", steps=3))
    assert param_count(three.model) == param_count(one.model)


def test_ignored_layers_keep_their_channels_and_an_unmatched_pattern_is_refused():
    spec = _spec("timm:resnet18")
    model = build_model(spec)
    pruned = prune(model, spec, PruneConfig("depgraph", 0.5, scope="local", ignore=("layer1.*",)))
    assert pruned.model.layer1[0].conv1.out_channels == 64 and pruned.model.layer2[0].conv1.out_channels == 64
    with pytest.raises(PruneError, match=r"prune.ignore pattern 'layer9\.\*' matches no layer of timm:resnet18"):
        prune(model, spec, PruneConfig("depgraph", 0.5, ignore=("layer9.*",)))


def test_a_vit_prunes_its_mlp_channels_and_keeps_token_width_and_heads():
    spec = _spec("timm:vit_tiny_patch16_224", SIX["timm:vit_tiny_patch16_224"])
    model = build_model(spec)
    pruned = prune(model, spec, PruneConfig("depgraph", 0.5, scope="local"))
    block = pruned.model.blocks[0]
    assert block.mlp.fc1.out_features == 384 and block.attn.qkv.out_features == 3 * 192
    assert block.attn.num_heads == 3 and pruned.model.patch_embed.proj.out_channels == 192


def test_the_random_control_copies_the_widths_with_other_channels():
    spec = _spec("timm:resnet18")
    model = build_model(spec)
    reference = prune(model, spec, PruneConfig("depgraph", 0.5, scope="local"))
    control = random_like(model, spec, reference, PruneConfig("random", 0.5, seed=3, like="depgraph"))
    assert control.spec.layout == reference.spec.layout
    assert not torch.equal(control.model.layer1[0].conv1.weight, reference.model.layer1[0].conv1.weight)
    via_method = prune(model, spec, PruneConfig("random", 0.5, scope="local", seed=3))  # like: depgraph by default
    assert via_method.spec.layout == reference.spec.layout


def test_unknown_names_and_arguments_are_refused_with_what_fits():
    with pytest.raises(ModelError, match=r"timm has no model 'resnet181'; closest: timm:resnet18"):
        build_model(ArchSpec("timm:resnet181", ()))
    with pytest.raises(ModelError, match=r"torchvision has no model 'mobilenetv3'; closest: .*torchvision:mobilenet"):
        default_spec("torchvision:mobilenetv3")
    with pytest.raises(ModelError, match=r"model_args \['bogus_width'\] do not fit"):
        build_model(_spec("timm:resnet18", {"bogus_width": 3}))
    with pytest.raises(
        ModelError, match=r"model_args \['pretrained'\]: set by the spec's dataset and never downloaded"
    ):
        build_model(_spec("timm:resnet18", {"pretrained": True}))
    with pytest.raises(ModelError, match="a library model takes no widths"):
        build_model(ArchSpec("timm:resnet18", (3, 4)))


def test_a_layout_that_does_not_fit_the_model_is_refused_naming_the_layer():
    model = build_model(_spec("timm:resnet18"))
    with pytest.raises(ModelError, match="layout names layer 'layer9.conv', which timm:resnet18 does not have"):
        apply_layout(model, {"layer9.conv": {"attrs": {}, "shapes": {}}}, "timm:resnet18")
    with pytest.raises(ModelError, match=r"layout shape \[128, 3, 7, 7\] of conv1.weight does not fit"):
        apply_layout(model, {"conv1": {"attrs": {}, "shapes": {"weight": [128, 3, 7, 7]}}})


class _Detach(nn.Module):
    def forward(self, x):
        return torch.from_numpy(x.detach().numpy()).clone()


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.custom = _Detach()
        self.body = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.body(self.custom(self.stem(x))).mean((2, 3)))


def test_a_model_depgraph_cannot_trace_is_refused_naming_the_layer():
    spec = _spec("timm:resnet18")  # the spec only gives the shape; the module is the untraceable one
    with pytest.raises(PruneError, match=r"DepGraph cannot trace timm:resnet18 at layer 'stem': .*prune.ignore"):
        depgraph(_Untraceable(), spec, PruneConfig("depgraph", 0.5, scope="local"))
    pruned = depgraph(_Untraceable(), spec, PruneConfig("depgraph", 0.5, scope="local", ignore=("stem",)))
    assert pruned.model.stem.out_channels == 8 and pruned.model.body.out_channels == 4


def test_prune_config_digests_of_the_paper_methods_are_unchanged():
    assert PruneConfig("l1-norm", 0.5).to_dict() == {
        "method": "l1-norm",
        "ratio": 0.5,
        "min_channels": 1,
        "scope": "global",
        "calibration_images": 256,
        "seed": 0,
    }
    assert PruneConfig("depgraph", 0.5, scope="local").scope == "layer"
    with pytest.raises(PruneError, match="max_ratio=0 is outside"):
        PruneConfig("depgraph", 0.5, max_ratio=0)
    with pytest.raises(PruneError, match="unknown; valid: l1, l2"):
        prune(build_model(_spec("timm:resnet18")), _spec("timm:resnet18"), PruneConfig("depgraph", 0.5, criterion="l3"))


@pytest.mark.parametrize(
    "name, conv_rule, linear_rule",
    [
        ("timm:resnet18", "he-fan-out", "torch-default"),  # kaiming_normal(fan_out) convs, nn.Linear's default fc
        ("timm:efficientnet_b0", "he-fan-out-groups", "uniform-fan-out"),  # timm's EfficientNet init
        ("timm:convnext_atto", "fixed", "fixed"),  # trunc_normal(std=.02) everywhere
    ],
)
def test_the_init_rule_is_read_off_the_fresh_model_and_a_cut_layer_gets_its_scale(name, conv_rule, linear_rule):
    from rethink.models.init_rule import RULES, fan_sizes, init_rules

    model = build_model(_spec(name))
    rules = init_rules(model)
    assert (rules[nn.Conv2d], rules[nn.Linear]) == (conv_rule, linear_rule)
    pruned = prune(model, _spec(name), PruneConfig("depgraph", 0.5, scope="local"))
    torch.manual_seed(3)
    rebuilt = build_model(pruned.spec)
    cut = [
        (n, m)
        for n, m in rebuilt.named_modules()
        if isinstance(m, nn.Conv2d) and m.weight.numel() >= 4096 and n in json.loads(pruned.spec.layout)
    ]
    assert cut
    for n, m in cut:
        std = float(m.weight.detach().std())
        unpruned = float(model.get_submodule(n).weight.detach().std())
        expected = RULES[conv_rule](fan_sizes(m)) if conv_rule != "fixed" else unpruned
        assert std == pytest.approx(expected, rel=0.12), n  # the rule's scale at the pruned fan, not the full one


def test_a_cut_he_fan_out_conv_is_scaled_up_by_the_square_root_of_its_lost_fan():
    spec = _spec("timm:resnet18")
    pruned = prune(build_model(spec), spec, PruneConfig("depgraph", 0.75, scope="local"))
    stds = []
    for seed in range(3):
        torch.manual_seed(seed)
        full = build_model(spec).layer3[0].conv1.weight.detach().std()
        torch.manual_seed(seed)
        small = build_model(pruned.spec).layer3[0].conv1.weight.detach().std()
        stds.append(float(small / full))
    assert sum(stds) / 3 == pytest.approx(2.0, rel=0.05)  # out 256 -> 64: sqrt(256 / 64)


def test_a_pruned_library_model_builds_on_the_meta_device_for_shape_work():
    spec = _spec("timm:resnet18")
    pruned = prune(build_model(spec), spec, PruneConfig("depgraph", 0.5, scope="local"))
    with torch.device("meta"):
        shapes = build_model(pruned.spec).state_dict()
    assert {k: v.shape for k, v in shapes.items()} == {k: v.shape for k, v in pruned.model.state_dict().items()}


def _out_shares(spec, full):
    return out_shares(json.loads(spec.layout), full)


# the couplings that make a uniform share hard: residual adds, depthwise and squeeze-excite, grouped convs, a
# ViT's MLPs beside a token width that stays whole (EfficientNet and ConvNeXt repeat them at twice the time)
UNIFORM = ["torchvision:resnet18", "timm:mobilenetv3_small_050", "timm:regnetx_002", "timm:vit_tiny_patch16_224"]


@pytest.mark.parametrize("name", UNIFORM)
def test_the_uniform_architecture_keeps_one_share_of_every_group_at_the_pruned_size(name):
    torch.manual_seed(0)
    spec = _spec(name, SIX[name])
    full = build_model(spec)
    config = PruneConfig("depgraph", 0.5, criterion="l1", scope="global", max_ratio=0.9)
    pruned = prune(full, spec, config)
    rng = torch.random.get_rng_state()
    d = derive("uniform", spec, pruned, match="params")
    assert torch.equal(torch.random.get_rng_state(), rng)  # the study's draws are not moved
    assert d.target_params == param_count(pruned.model) and abs(d.params / d.target_params - 1) <= 0.01
    share = statistics.median(d.pattern.fractions.values())  # each stage's kept share: one share for all
    assert 0.3 < share < 0.9 and max(abs(f - share) for f in d.pattern.fractions.values()) < 0.1
    # every layer whose outputs DepGraph cut keeps the one share, up to a channel either way
    outs = [m for m in full.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    cut = [
        (s, getattr(m, "out_channels", None) or m.out_features)
        for s, m in zip(_out_shares(d.spec, full), outs, strict=True)
    ]
    off = [(round(s, 3), n) for s, n in cut if s < 1 and abs(s - share) > 2 / n + 0.01]
    assert not off, f"layers off the uniform share {share:.3f}: {off[:5]}"
    # the global pruning's shares spread; the uniform one's do not
    spread = [s for s in _out_shares(pruned.spec, full) if s < 1]
    assert len([s for s, _ in cut if s < 1]) >= len(spread) > 0
    # the record rebuilds the architecture it counted, freshly initialised, and it trains
    torch.manual_seed(1)
    rebuilt = build_model(ArchSpec.from_dict(json.loads(json.dumps(d.to_dict()["arch"]))))
    assert param_count(rebuilt) == d.params and forward_flops(rebuilt, (3, 32, 32)) == d.macs
    rebuilt.train()(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()


def test_the_uniform_architecture_matches_macs_when_asked_and_only_uniform_is_built_for_library_models():
    torch.manual_seed(0)
    spec = _spec("torchvision:resnet18")
    pruned = prune(build_model(spec), spec, PruneConfig("depgraph", 0.5, criterion="l1", scope="global"))
    target = forward_flops(pruned.model, (3, 32, 32))
    d = derive("uniform", spec, pruned, match="flops")
    assert d.target_macs == target and abs(d.macs / target - 1) <= 0.01 and d.error == d.macs / target - 1
    with pytest.raises(PatternError, match="the transferred architecture is built for the registry's models only"):
        derive("transferred", spec, pruned)


def test_the_guided_architecture_keeps_the_pruned_stage_pattern_at_the_pruned_size():
    torch.manual_seed(0)
    spec = _spec("torchvision:resnet18")
    full = build_model(spec)
    config = PruneConfig("depgraph", 0.5, criterion="l1", scope="global")
    # a pruned model with a known stage pattern: stage 1 loses 20% of its channels, stage 4 70%, the rest half
    small = copy.deepcopy(full)
    cut = {"layer1": 0.2, "layer4": 0.7}
    ratios = {m: cut.get(n.split(".")[0], 0.5) for n, m in small.named_modules() if isinstance(m, nn.Conv2d)}
    prune_step(make_pruner(small, spec, config, importance("random"), ratios), small, spec)
    pruned = finish(small, full, spec, config)
    guided, uniform = derive("guided", spec, pruned), derive("uniform", spec, pruned)
    assert abs(guided.error) <= 0.01 and abs(uniform.error) <= 0.01 and guided.spec.layout != uniform.spec.layout
    # every stage keeps the pruned model's mean share of its stage times one factor (up to a channel a group)
    groups, _ = channel_groups(full, spec, replace(config, scope="local", ratio=0.0))
    pruned_shares = stage_shares(groups, pruned.model)
    assert max(pruned_shares.values()) - min(pruned_shares.values()) > 0.3  # a pattern, not one share
    kept = guided.pattern.fractions
    assert set(kept) == set(pruned_shares) and len(kept) >= 4
    factors = [kept[s] / pruned_shares[s] for s in kept if kept[s] < 0.999]
    assert max(factors) / min(factors) < 1.1, {s: (round(kept[s], 3), round(pruned_shares[s], 3)) for s in kept}
    spread = [f for f in uniform.pattern.fractions.values()]
    assert max(spread) - min(spread) < 0.1  # the uniform twin of the same model has none


def test_a_second_derive_on_the_same_model_reuses_its_counts_and_finds_the_same_architecture(monkeypatch):
    """The cost check, the trunk and each final seed's base derive on the same library model: the sizes each
    candidate cut has are counted once, and a repeat finds what the first derive found without cutting."""
    import rethink.prune.library_arch as library_arch

    torch.manual_seed(0)
    spec = _spec("timm:mobilenetv3_small_050")
    pruned = prune(build_model(spec), spec, PruneConfig("depgraph", 0.5, criterion="l1", scope="global"))
    library_arch._SIZES.clear()
    cuts = []
    real_cut = library_arch._cut
    monkeypatch.setattr(library_arch, "_cut", lambda *a: cuts.append(a[-1]) or real_cut(*a))
    first = derive("uniform", spec, pruned)
    counted = len(cuts)
    assert counted > 2 and len(set(cuts)) == counted - 1  # each candidate cut once; the answer cut again to keep
    again = derive("uniform", spec, pruned)
    assert again == first and len(cuts) == counted + 1  # only the answer, cut to be kept
    lo, hi = cuts[:2]  # every solve starts from the same two ends (the smallest and the full widths)
    other = derive("uniform", spec, pruned, match="flops")  # another target: the sizes counted so far still count
    assert abs(other.error) <= 0.01 and len(cuts) > counted + 2  # it cut candidates of its own
    assert cuts.count(lo) == 1 and cuts.count(hi) == 1  # but not the two ends again
