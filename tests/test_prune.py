import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from rethink.arms import build_arm
from rethink.flops import forward_flops, nonzero_forward_flops, param_count
from rethink.models import MODELS, ArchSpec, build_model, default_spec, prunable_units
from rethink.prune import (
    METHODS,
    VARIANTS,
    KeepMasked,
    PruneConfig,
    PruneError,
    prune,
    variants_of,
    zero_pruned_channels,
)
from rethink.prune.sfp import SoftFilterPruning
from rethink.prune.slimming import SparsityPenalty
from rethink.prune.surgery import apply_keep
from rethink.prune.thinet import SAMPLES_PER_IMAGE, choose_channels, contributions, greedy_remove, n_kept
from rethink.splits import train_val_split
from rethink.train import TrainConfig, seed_everything, train

# methods that prune a trained model (predefined names an architecture and reads no weights: tests/test_predefined.py)
STRUCTURED = sorted(n for n, e in METHODS.items() if e.structured and e.inherits)


def _randomized(spec: ArchSpec) -> nn.Module:
    """A model whose BN statistics and affine terms are non-trivial, as after training."""
    torch.manual_seed(0)
    model = build_model(spec)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.momentum = None  # running statistics = the average over the calibration batches
        for _ in range(3):
            model(torch.randn(16, spec.in_channels, spec.input_size, spec.input_size))
        for m in bns:
            m.momentum = 0.1
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, m.in_features**-0.5)
    return model.eval()


IMAGENET_METHODS = ("l1-norm", "slimming")  # ImageNet models: the bottleneck and the flattened VGG head's surgery


def _cases():
    for method in STRUCTURED:
        for name in sorted(MODELS):
            if MODELS[name].input_size == 224 and method not in IMAGENET_METHODS:
                continue  # their units are the CIFAR models' kinds; the other methods are covered there
            if MODELS[name].family in METHODS[method].families and (
                MODELS[name].batch_norm or not METHODS[method].needs_bn
            ):
                yield method, name


@pytest.mark.parametrize("method, name", list(_cases()))
def test_pruned_model_equals_original_with_pruned_channels_silenced(method, name):
    spec = default_spec(name, 3, 10, 16, 0.5)  # half width: the surgery is the same, the test twice as fast
    model = _randomized(spec)
    x = torch.randn(6, 3, 16, 16)
    pruned = prune(model, spec, PruneConfig(method, ratio=0.4), data=x)
    assert sum(pruned.spec.widths) < sum(spec.widths)
    assert pruned.keep and forward_flops(pruned.model, (3, 16, 16)) < forward_flops(model, (3, 16, 16))
    reference = zero_pruned_channels(copy.deepcopy(model), spec, pruned.keep)
    with torch.no_grad():
        if method == "thinet":  # besides the surgery, ThiNet only rescales each kept input channel of a consumer
            units = prunable_units(spec, model)
            for k, kept in pruned.keep.items():
                (consumer,) = units[k].consumers
                rows = next(
                    (pruned.keep[j] for j, u in enumerate(units) if u.conv == consumer and j in pruned.keep), ...
                )
                before = reference.get_parameter(f"{consumer}.weight")
                old = before[rows][:, kept]
                after = pruned.model.get_parameter(f"{consumer}.weight")
                scale = (after * old).sum((0, 2, 3)) / (old**2).sum((0, 2, 3))
                torch.testing.assert_close(after, old * scale.view(1, -1, 1, 1), atol=1e-5, rtol=1e-4)
                before[:, kept] *= scale.view(1, -1, 1, 1)
        for name, mask in (pruned.masks or {}).items():  # sfp: filters held at zero in place (stem, block conv2)
            reference.get_parameter(name)[~mask.flatten(1).any(1)] = 0
        torch.testing.assert_close(pruned.model.eval()(x), reference(x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(model(x), reference(x), atol=1e-3)  # the pruning did change the function


@pytest.mark.parametrize("variant", variants_of("l1-norm"))
def test_l1_variants_equal_silenced_original(variant):
    spec = default_spec(VARIANTS[variant].model, 3, 10, 8)
    model = _randomized(spec)
    x = torch.randn(4, 3, 8, 8)
    pruned = prune(model, spec, PruneConfig("l1-norm", variant=variant))
    reference = zero_pruned_channels(copy.deepcopy(model), spec, pruned.keep)
    with torch.no_grad():
        torch.testing.assert_close(pruned.model.eval()(x), reference(x), atol=1e-5, rtol=1e-4)


def test_l1_keeps_largest_l1_filters():
    spec = default_spec("vgg11", 3, 10, 8, 0.25)
    model = _randomized(spec)
    pruned = prune(model, spec, PruneConfig("l1-norm", ratio=0.5))
    w = model.features[0].weight.detach()
    norms = w.abs().flatten(1).sum(1)
    kept = pruned.keep[0]
    assert len(kept) == w.shape[0] // 2
    assert norms[kept].min() >= norms[[i for i in range(w.shape[0]) if i not in kept]].max()
    torch.testing.assert_close(pruned.model.features[0].weight, w[kept])


# Li et al. 2017, Table 1: FLOPs reduction %, parameter reduction %; Liu et al. 2019: Scratch-B epochs.
PAPER = {
    "vgg16-a": (34.2, 64.0, 243),
    "resnet56-a": (10.4, 9.4, 178),
    "resnet56-b": (27.6, 13.7, 220),
    "resnet110-a": (15.9, 2.3, 190),
    "resnet110-b": (38.6, 32.4, 260),
}


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_reductions_and_scratch_b_match_the_papers(variant):
    from rethink.arms import arm_epochs

    spec = default_spec(VARIANTS[variant].model)
    model = build_model(spec)
    pruned = prune(model, spec, PruneConfig("l1-norm", variant=variant))
    f0, f1 = forward_flops(model, (3, 32, 32)), forward_flops(pruned.model, (3, 32, 32))
    p0, p1 = param_count(model), param_count(pruned.model)
    flops_red, params_red, epochs = PAPER[variant]
    assert 100 * (1 - f1 / f0) == pytest.approx(flops_red, abs=1.0)
    assert 100 * (1 - p1 / p0) == pytest.approx(params_red, abs=1.0)
    assert arm_epochs("scratch-b", TrainConfig(epochs=160), f0, f1) == pytest.approx(epochs, rel=0.02)


def test_magnitude_masks_stay_zero_through_training(digits):
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    seed_everything(0)
    model = build_model(spec)
    pruned = prune(model, spec, PruneConfig("magnitude", ratio=0.6))
    conv_total = sum(m.numel() for m in pruned.masks.values())
    assert sum(int((~m).sum()) for m in pruned.masks.values()) == int(0.6 * conv_total) + 1  # official threshold
    split = train_val_split(digits, 0.2, 0)
    train(pruned.model, split, TrainConfig(epochs=2, lr=0.05, augment="none"), [KeepMasked(pruned.masks)])
    params = dict(pruned.model.named_parameters())
    for name, mask in pruned.masks.items():
        assert torch.count_nonzero(params[name].detach()[~mask]) == 0
        assert torch.count_nonzero(params[name].detach()[mask]) > 0.99 * int(mask.sum())


def test_nonzero_flops_shrink_with_sparsity():
    spec = default_spec("vgg19", 3, 10, 32, 0.25)
    model = build_model(spec)
    flops = [
        nonzero_forward_flops(prune(model, spec, PruneConfig("magnitude", ratio=r)).model, (3, 32, 32))
        for r in (0.0, 0.3, 0.6, 0.9)
    ]
    assert flops[0] == forward_flops(model, (3, 32, 32))
    assert flops[0] > flops[1] > flops[2] > flops[3]
    assert flops[3] < 0.3 * flops[0]  # global threshold: big-FLOP early layers keep more weights


@pytest.mark.parametrize("percent", [0.3, 0.6, 0.9])
def test_magnitude_keeps_what_the_official_threshold_keeps_layer_by_layer(percent):
    """Compared with cifar/weight-level/cifar_prune.py of Eric-mingjie/rethinking-network-pruning (commit
    2ac473d): every conv's |w| sorted ascending, thre = y[int(total * percent)], a weight kept iff |w| > thre.
    Re-stated here, not copied. The weight-level VGG-19 (half width, for time) at the paper's three ratios."""
    spec = default_spec("vgg19", classifier="linear", width_scale=0.5)
    torch.manual_seed(0)
    model = build_model(spec)
    convs = [m.weight.detach().abs() for m in model.modules() if isinstance(m, nn.Conv2d)]
    y = torch.cat([w.flatten() for w in convs]).sort().values
    thre = y[int(len(y) * percent)]
    official = [int((w > thre).sum()) for w in convs]
    pruned = prune(model, spec, PruneConfig("magnitude", ratio=percent))
    assert [int(m.sum()) for m in pruned.masks.values()] == official
    assert sum(official) <= len(y) - int(len(y) * percent) - 1  # the threshold's own weight goes too (and ties)


def test_layerwise_magnitude_prunes_each_layer_by_the_ratio():
    spec = default_spec("resnet20", 3, 10, 8)
    pruned = prune(build_model(spec), spec, PruneConfig("magnitude", ratio=0.5, scope="layer"))
    for mask in pruned.masks.values():
        assert abs(float(mask.float().mean()) - 0.5) < 0.02


def test_slimming_prunes_lowest_gamma_first(digits):
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    split = train_val_split(digits, 0.2, 0)
    gammas = {}
    for strength in (0.0, 1e-3):
        seed_everything(0)
        model = build_model(spec)
        train(model, split, TrainConfig(epochs=3, lr=0.05, augment="none"), [SparsityPenalty(strength)])
        gammas[strength] = torch.cat(
            [m.weight.detach().abs() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        )
    assert gammas[1e-3].mean() < gammas[0.0].mean()  # the L1 penalty shrinks the scales
    pruned = prune(model, spec, PruneConfig("slimming", ratio=0.4))
    units = prunable_units(spec, model)
    kept_g, dropped_g = [], []
    for k, u in enumerate(units):
        g = model.get_submodule(u.bn).weight.detach().abs()
        mask = torch.zeros(len(g), dtype=torch.bool)
        mask[pruned.keep[k]] = True
        kept_g.append(g[mask])
        dropped_g.append(g[~mask])
    dropped = torch.cat(dropped_g)
    assert len(dropped) == int(0.4 * len(gammas[1e-3])) + 1  # the official threshold's own channel goes too
    assert dropped.max() <= torch.cat(kept_g).min()


def test_slimming_floor_and_emptied_layer():
    spec = default_spec("vgg11", 3, 10, 8, 0.25)
    model = _randomized(spec)
    with torch.no_grad():
        model.features[1].weight.fill_(1e-6)  # the first layer's scales are the smallest of all
    floored = prune(model, spec, PruneConfig("slimming", ratio=0.2, min_channels=2))
    assert floored.spec.widths[0] == 2
    with pytest.raises(PruneError, match="features.1"):
        prune(model, spec, PruneConfig("slimming", ratio=0.2, min_channels=0))


OFFICIAL_SFP = json.loads((Path(__file__).parent / "data" / "official_sfp_resnet.json").read_text())


def _zeroed(model: nn.Module) -> dict[str, list[int]]:
    return {
        n: torch.nonzero(m.weight.flatten(1).abs().sum(1) == 0).flatten().tolist()
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def _seeded(depth: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model(default_spec(f"resnet{depth}"))


def test_sfp_zeroes_what_the_official_code_zeroes_at_start_and_after_an_epoch():
    """Expected sets: the official Mask class (tests/data/official_sfp_resnet.json says where and how) run on
    the same seeded weights. "After an epoch": the masked init plus a seeded per-filter update standing in
    for an epoch of SGD, large enough that 71 zeroed filters regrow past kept ones and leave the zeroed set."""
    model, sfp = _seeded(20), SoftFilterPruning(0.3)
    sfp.on_train_start(model, None)
    assert _zeroed(model) == OFFICIAL_SFP["resnet20_ratio0.3_zeroed_at_start"]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                scale = torch.rand(m.weight.shape[0], 1, 1, 1, generator=g) * 2 * m.weight.std()
                m.weight.add_(torch.randn(m.weight.shape, generator=g) * scale)
    sfp.after_epoch_train(model)
    after = _zeroed(model)
    assert after == OFFICIAL_SFP["resnet20_ratio0.3_zeroed_after_epoch"]
    regrown = sum(len(set(OFFICIAL_SFP["resnet20_ratio0.3_zeroed_at_start"][k]) - set(after[k])) for k in after)
    assert regrown == 71


@pytest.mark.parametrize("depth, ratio", [(56, 0.4), (110, 0.3)])
def test_sfp_zeroes_the_official_count_in_every_conv(depth, ratio):
    """Every conv, stem included, loses int(n × ratio) filters (official: int(n × (1 − rate)))."""
    model = _seeded(depth)
    SoftFilterPruning(ratio).on_train_start(model, None)
    counts = {k: len(v) for k, v in _zeroed(model).items()}
    assert counts == OFFICIAL_SFP[f"resnet{depth}_ratio{ratio}_zeroed_counts"]


def test_sfp_prune_removes_inner_filters_and_holds_the_others_at_zero(digits):
    """Trained with SFP, the base's zeroed filters are what `sfp` prunes: block conv1 filters leave the
    architecture, stem and conv2 filters stay as masked zeros, and the count is the FLOPs He et al. count."""
    spec = default_spec("resnet20", 1, 10, 8, 0.5)
    seed_everything(0)
    model = build_model(spec)
    split = train_val_split(digits, 0.1, 0)
    train(model, split, TrainConfig(epochs=2, batch_size=64, lr=0.05, augment="none"), [SoftFilterPruning(0.4)])
    zeroed = _zeroed(model)
    pruned = prune(model, spec, PruneConfig("sfp", ratio=0.4))
    for k, u in enumerate(prunable_units(spec, model)):
        n = spec.widths[k]
        assert pruned.spec.widths[k] == n - int(n * 0.4)
        assert pruned.keep[k] == [c for c in range(n) if c not in zeroed[u.conv]]
    held = {n[: -len(".weight")] for n in pruned.masks}
    assert held == {n for n in zeroed if n == "conv1" or n.endswith(".conv2")}
    for name, mask in pruned.masks.items():
        filters = (~mask.flatten(1).any(1)).nonzero().flatten().tolist()
        assert filters == zeroed[name[: -len(".weight")]]
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pruned.model.eval()(x), model.eval()(x), atol=0.5, rtol=0)  # BN shifts aside
    # MACs as He et al. count them: stem out (1-r); conv1 in full, out (1-r); conv2 in (1-r), out (1-r).
    kept = {n: m.out_channels - len(zeroed[n]) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    hw, net = 8 * 8, pruned.model
    expected = hw * 9 * 1 * kept["conv1"] + net.fc.in_features * net.fc.out_features
    for b, block in enumerate(net.blocks):
        hw //= block.conv1.stride[0] ** 2
        expected += hw * 9 * block.conv1.in_channels * block.conv1.out_channels
        expected += hw * 9 * block.conv2.in_channels * kept[f"blocks.{b}.conv2"]
    assert nonzero_forward_flops(pruned.model, (1, 8, 8)) == expected
    for arm in ("finetune", "scratch-e"):  # both train the pruned architecture with the held filters at zero
        built = build_arm(arm, pruned, spec, TrainConfig(epochs=2), forward_flops(model, (1, 8, 8)))
        train(built.model, split, TrainConfig(epochs=1, lr=0.05, augment="none"), built.callbacks)
        for name, mask in pruned.masks.items():
            w = built.model.get_parameter(name)
            assert w[~mask].abs().sum() == 0 and w[mask].abs().sum() > 0


OFFICIAL_THINET = json.loads((Path(__file__).parent / "data" / "official_thinet_case.json").read_text())


def _thinet_case() -> torch.Tensor:
    """A fixed small case: 400 samples × 12 channel contributions of varied scale, one pair that nearly
    cancels, one correlated pair (so rescaling can make up for a removed channel)."""
    g = torch.Generator().manual_seed(7)
    n, c = 400, 12
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2.0, c, dtype=torch.float64)
    z[:, 3] = -0.9 * z[:, 8] + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    shared = torch.randn(n, generator=g, dtype=torch.float64)
    z[:, 5] += shared
    z[:, 10] += 0.5 * shared
    return z


@pytest.mark.parametrize("compress_rate", sorted(OFFICIAL_THINET["cases"]))
def test_thinet_matches_the_official_selection_and_rescaling(compress_rate):
    """Kept channels, least-squares scales and reconstruction errors against the official value_sum run on
    the same case (tests/data/official_thinet_case.json says where and how)."""
    expected = OFFICIAL_THINET["cases"][compress_rate]
    z = _thinet_case()
    choice = choose_channels(z, n_kept(z.shape[1], 1 - float(compress_rate)))
    assert choice.kept == expected["kept"]
    torch.testing.assert_close(choice.scale, torch.tensor(expected["scale"], dtype=torch.float64))
    assert choice.error_unscaled == pytest.approx(expected["error_unscaled"], rel=1e-9)
    assert choice.error == pytest.approx(expected["error"], rel=1e-9) and choice.error < choice.error_unscaled


def _consumer_input(net: nn.Module, consumer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = consumer.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    with torch.no_grad():
        net.eval()(x)
    hook.remove()
    return seen[0]


def test_thinet_prunes_layer_by_layer_from_the_already_pruned_network():
    """Each layer's contributions come from the network pruned (and rescaled) before it: re-running the
    choice of layer k on the final model's predecessor-pruned activations gives the same kept channels."""
    spec = default_spec("vgg11", 3, 10, 16, 0.25)
    model = _randomized(spec)
    x = torch.randn(32, 3, 16, 16)
    pruned = prune(model, spec, PruneConfig("thinet", ratio=0.5, seed=0), data=x)
    units = prunable_units(spec, model)
    targets = [k for k, u in enumerate(units) if isinstance(model.get_submodule(u.consumers[0]), nn.Conv2d)]
    assert sorted(pruned.keep) == targets
    g = torch.Generator().manual_seed(0)
    current, current_spec = model, spec
    for k in targets:  # the same walk, by hand: record, choose, cut, rescale
        consumer = current.get_submodule(units[k].consumers[0])
        seen = _consumer_input(current, consumer, x)
        choice = choose_channels(contributions(seen, consumer, SAMPLES_PER_IMAGE, g), n_kept(consumer.in_channels, 0.5))
        assert choice.kept == pruned.keep[k]
        current, current_spec = apply_keep(current, current_spec, {k: choice.kept})
        with torch.no_grad():
            current.get_submodule(units[k].consumers[0]).weight.mul_(choice.scale.float().view(1, -1, 1, 1))
    with torch.no_grad():
        torch.testing.assert_close(current.eval()(x), pruned.model.eval()(x))
    one_shot = {}  # the old one-shot walk (every layer from the unpruned network) chooses differently
    g = torch.Generator().manual_seed(0)
    for k in targets:
        consumer = model.get_submodule(units[k].consumers[0])
        seen = _consumer_input(model, consumer, x)
        one_shot[k] = choose_channels(
            contributions(seen, consumer, SAMPLES_PER_IMAGE, g), n_kept(consumer.in_channels, 0.5)
        ).kept
    assert one_shot[targets[0]] == pruned.keep[targets[0]] and one_shot != pruned.keep


def test_thinet_greedy_removes_channels_that_cancel_or_vanish():
    z = torch.tensor([[1.0, 5.0, 0.0, -1.0], [2.0, 5.0, 0.0, -2.0]])
    assert greedy_remove(z, 1) == [2]
    assert sorted(greedy_remove(z, 3)) == [0, 2, 3]  # channels 0 and 3 cancel each other


def test_thinet_reconstructs_better_than_random_choice():
    spec = default_spec("vgg11", 3, 10, 16, 0.25)
    model = _randomized(spec)
    x = torch.randn(16, 3, 16, 16)
    pruned = prune(model, spec, PruneConfig("thinet", ratio=0.5), data=x)
    recorded = {}
    model.features[4].register_forward_pre_hook(lambda m, inp: recorded.setdefault("x", inp[0].detach()))
    model(x)
    z = contributions(recorded["x"], model.features[4], 10, torch.Generator().manual_seed(1)).double()
    unit = 0  # the first conv (features.0) feeds features.4, through a max-pool
    removed = [c for c in range(z.shape[1]) if c not in pruned.keep[unit]]
    g = torch.Generator().manual_seed(2)
    random_errors = [
        z[:, torch.randperm(z.shape[1], generator=g)[: len(removed)]].sum(1).pow(2).sum() for _ in range(20)
    ]
    assert z[:, removed].sum(1).pow(2).sum() < torch.stack(random_errors).median()


@pytest.mark.parametrize(
    "config, name, match",
    [
        (PruneConfig("l1-norm", variant="resnet56-a"), "vgg16", "defined for resnet56"),
        (PruneConfig("l1-norm", variant="vgg16-z"), "vgg16", "valid names"),
        (PruneConfig("pruneall", ratio=0.5), "vgg16", "valid names"),
        (PruneConfig("sfp", ratio=0.5), "densenet40", "does not support densenet40"),
        (PruneConfig("l1-norm"), "vgg11", "ratio or a variant"),
        (PruneConfig("l1-norm", variant="vgg-conv"), "vgg16_nobn", "unknown l1-norm variant 'vgg-conv'"),
        (PruneConfig("slimming", ratio=0.5), "vgg16_nobn", "slimming ranks BN scales and vgg16_nobn has no BN"),
    ],
)
def test_requests_that_do_not_fit_are_errors(config, name, match):
    spec = default_spec(name, 3, 10, 8)
    with pytest.raises(PruneError, match=match):
        prune(build_model(spec), spec, config)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan")])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(PruneError, match="outside"):
        PruneConfig("l1-norm", ratio=ratio)


# ThiNet-70 / -50 / -30 on ResNet-50 as the ThiNet paper counts them (Luo et al. 2017, its ResNet-50 table):
# parameters in millions, and FLOPs over the unpruned model's 7.72B
THINET_RESNET50 = [(0.3, 16.94, 4.88 / 7.72), (0.5, 12.38, 3.41 / 7.72), (0.7, 8.66, 2.20 / 7.72)]


@pytest.mark.parametrize("ratio, params_m, flops_share", THINET_RESNET50, ids=["thinet-70", "thinet-50", "thinet-30"])
def test_thinet_on_resnet50_gives_the_thinet_papers_models(ratio, params_m, flops_share):
    """The shipped imagenet-thinet-resnet50 spec's three levels are ThiNet-70, -50 and -30: the same parameter
    counts to 10 thousand, the same share of the unpruned FLOPs within 1% (the widths follow from the ratio,
    so 32-px calibration images give the architecture of 224-px ones)."""
    spec = default_spec("resnet50", 3, 1000, 224)
    model = build_model(spec)
    pruned = prune(model, spec, PruneConfig("thinet", ratio=ratio, calibration_images=2), torch.rand(2, 3, 32, 32))
    assert param_count(pruned.model) / 1e6 == pytest.approx(params_m, abs=0.01)
    shape = (3, 224, 224)
    assert forward_flops(pruned.model, shape) / forward_flops(model, shape) == pytest.approx(flops_share, rel=0.01)


# imagenet/thinet/models/thinetconv.py's `conv` list: ThiNet's VGG-Conv (conv1_1 to conv4_3 halved)
THINET_VGG_CONV = [32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]


def test_thinet_vgg_conv_variant_gives_the_official_vgg_conv():
    """`prune.variant = "vgg-conv"`: ThiNet on the first 10 convs of VGG-16 (no BN) gives the official
    ThiNet-Conv widths, the 4096-4096 head whole, and the ThiNet paper's 131.44 M weights (±0.01 M) and
    9.58 GFLOPs (4.79 G multiply-adds) at 224 px; the last three convs and the head keep their trained weights."""
    spec = default_spec("vgg16_nobn", 3, 1000, 224)
    model = build_model(spec)
    config = PruneConfig("thinet", variant="vgg-conv", calibration_images=4)
    pruned = prune(model, spec, config, torch.rand(4, 3, 32, 32))
    assert list(pruned.spec.widths) == THINET_VGG_CONV and sorted(pruned.keep) == list(range(10))
    weights = sum(p.numel() for p in pruned.model.parameters() if p.dim() > 1)  # ThiNet counts no biases
    assert weights / 1e6 == pytest.approx(131.44, abs=0.01)
    assert forward_flops(pruned.model, (3, 224, 224)) / 1e9 == pytest.approx(4.79, abs=0.01)
    convs = [m for m in pruned.model.features if isinstance(m, nn.Conv2d)]
    old = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert torch.equal(convs[-1].weight, old[-1].weight) and torch.equal(convs[-2].bias, old[-2].bias)
    assert torch.equal(pruned.model.classifier[0].weight, model.classifier[0].weight)


@pytest.mark.parametrize(
    "variant, name, match",
    [("vgg16-a", "vgg16", "unknown thinet variant 'vgg16-a'; valid names: vgg-conv"),
     ("vgg-conv", "vgg16", "defined for vgg16_nobn, not vgg16")],
)  # fmt: skip
def test_a_thinet_variant_of_another_method_or_model_is_refused(variant, name, match):
    spec = default_spec(name, 3, 10, 8)
    with pytest.raises(PruneError, match=match):
        prune(build_model(spec), spec, PruneConfig("thinet", variant=variant), torch.rand(2, 3, 8, 8))


def test_thinet_needs_calibration_images():
    spec = default_spec("vgg11", 3, 10, 8)
    with pytest.raises(PruneError, match="calibration"):
        prune(build_model(spec), spec, PruneConfig("thinet", ratio=0.5))


@pytest.mark.parametrize("like, ratio", [("l1-norm", 0.5), ("slimming", 0.4), ("magnitude", 0.7)])
def test_random_control_copies_the_widths_but_not_the_choice(like, ratio):
    """The `random` method: the per-layer widths (or weight counts) of `like`, channels chosen at random."""
    spec = default_spec("vgg11", 3, 10, 16)
    model = _randomized(spec)
    reference = prune(model, spec, PruneConfig(like, ratio=ratio))
    control = prune(model, spec, PruneConfig("random", ratio=ratio, like=like, seed=3))
    again = prune(model, spec, PruneConfig("random", ratio=ratio, like=like, seed=3))
    if reference.masks is not None:
        assert {k: int(m.sum()) for k, m in control.masks.items()} == {
            k: int(m.sum()) for k, m in reference.masks.items()
        }
        assert any(not torch.equal(control.masks[k], reference.masks[k]) for k in reference.masks)
        assert all(torch.equal(control.masks[k], again.masks[k]) for k in control.masks)  # seeded
        return
    assert control.spec.widths == reference.spec.widths
    assert {k: len(v) for k, v in control.keep.items()} == {k: len(v) for k, v in reference.keep.items()}
    assert control.keep != reference.keep and control.keep == again.keep
    x = torch.randn(4, 3, 16, 16)
    silenced = zero_pruned_channels(copy.deepcopy(model), spec, control.keep)
    with torch.no_grad():  # the surgery is exact for the random selection too
        torch.testing.assert_close(control.model.eval()(x), silenced(x), atol=1e-5, rtol=1e-4)


def test_random_control_of_sfp_copies_widths_and_held_filter_counts():
    spec = default_spec("resnet20", 3, 10, 16)
    model = _randomized(spec)
    reference = prune(model, spec, PruneConfig("sfp", ratio=0.4))
    control = prune(model, spec, PruneConfig("random", ratio=0.4, like="sfp", seed=3))
    assert control.spec.widths == reference.spec.widths and control.keep != reference.keep
    held = {k: (~m.flatten(1).any(1)).nonzero().flatten().tolist() for k, m in control.masks.items()}
    ref_held = {k: (~m.flatten(1).any(1)).nonzero().flatten().tolist() for k, m in reference.masks.items()}
    assert {k: len(v) for k, v in held.items()} == {k: len(v) for k, v in ref_held.items()} and held != ref_held
    for k, filters in held.items():
        assert control.model.get_parameter(k)[filters].abs().sum() == 0


def _official_slimming_counts(model: torch.nn.Module, percent: float) -> list[int]:
    """Kept channels per BatchNorm2d as the paper's official code computes them (compared with
    cifar/network-slimming/vggprune.py, resprune.py and denseprune.py of Eric-mingjie/rethinking-network-pruning,
    commit 92e4108): all |gamma| of every BatchNorm2d sorted ascending, thre = y[int(total * percent)],
    a channel kept iff |gamma| > thre. Re-stated here, not copied; no floor, so no layer may empty."""
    gammas = [m.weight.detach().abs() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    y = torch.cat(gammas).sort().values
    thre = y[int(len(y) * percent)]
    return [int((g > thre).sum()) for g in gammas]


@pytest.mark.parametrize("name, percent", [("vgg19", 0.7), ("preresnet164", 0.4), ("densenet40", 0.4)])
def test_slimming_keeps_what_the_official_threshold_keeps_layer_by_layer(name, percent):
    """The paper's settings (VGG-19 70%, PreResNet-164 40%, DenseNet-40 40%): the same kept count in every
    layer as the official rule on the same weights; in total int(total × percent) + 1 channels go."""
    spec = default_spec(name, 3, 10, 32, 1.0)
    torch.manual_seed(0)
    model = build_model(spec)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.0, 1.0)  # distinct scales, as after sparsity training (no ties)
    official = _official_slimming_counts(model, percent)
    pruned = prune(model, spec, PruneConfig("slimming", ratio=percent))
    units = prunable_units(spec, model)
    assert len(units) == len(official)  # every BatchNorm2d is a unit, as in the official code
    assert [len(pruned.keep[k]) for k in range(len(units))] == official
    n_all = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert n_all - sum(official) == int(n_all * percent) + 1  # e.g. VGG-19 70%: 1,651 of 5,504 kept


@pytest.mark.parametrize("method", ["l1-norm", "slimming"])
def test_a_conv_bias_follows_its_kept_filters(method):
    """The weight-level VGG's convs carry a bias (conv_init="weight-level"): surgery keeps the bias of each
    kept filter, so the pruned model still equals the original with the pruned channels silenced."""
    from dataclasses import replace

    spec = replace(default_spec("vgg11", 3, 10, 16, 0.5), conv_init="weight-level")
    model = _randomized(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(6, 3, 16, 16)
    pruned = prune(model, spec, PruneConfig(method, ratio=0.4))
    assert pruned.spec.conv_init == "weight-level" and sum(pruned.spec.widths) < sum(spec.widths)
    reference = zero_pruned_channels(copy.deepcopy(model), spec, pruned.keep)
    with torch.no_grad():
        torch.testing.assert_close(pruned.model.eval()(x), reference(x), atol=1e-5, rtol=1e-4)


def test_pruning_the_last_conv_of_an_imagenet_vgg_keeps_each_kept_channels_pooled_block():
    """At 64 px the ImageNet VGG's head reads a 2×2 map per channel: surgery keeps those 4 columns per kept
    channel (surgery.consumer_columns), so the pruned model equals the original with the channels silenced."""
    spec = default_spec("vgg11_bn", 3, 10, 64, 0.25)
    model = _randomized(spec)
    assert model.classifier[0].in_features == spec.widths[-1] * 4
    x = torch.randn(4, 3, 64, 64)
    pruned = prune(model, spec, PruneConfig("l1-norm", ratio=0.5))
    assert pruned.model.classifier[0].in_features == pruned.spec.widths[-1] * 4 < spec.widths[-1] * 4
    reference = zero_pruned_channels(copy.deepcopy(model), spec, pruned.keep)
    with torch.no_grad():
        torch.testing.assert_close(pruned.model.eval()(x), reference(x), atol=1e-5, rtol=1e-4)
