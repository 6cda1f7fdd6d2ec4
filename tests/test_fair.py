"""The fair experiment (issue 11), at unit level: schedules every arm can search, independent init
streams, baselines that are points of the space, and the budgets that define the report's rows."""

import json
import math

import pytest
import torch

from conftest import TINY
from rethink.arms import build_arm, derive_seed, final_seeds, scratch_init_seed
from rethink.budget import SCHEDULES, lr_at
from rethink.flops import forward_flops
from rethink.models import build_model, default_spec
from rethink.prune import PruneConfig, prune
from rethink.splits import train_val_split
from rethink.train import Callback, TrainConfig, seed_everything, train
from study.plan.layout import baseline_trials, budgets, rows_of, study_arms
from study.plan.load import load_spec
from study.plan.spec import SPECS_DIR, SpecError

BASE = TrainConfig(epochs=20, lr=0.1)


def test_warmup_cosine_warms_up_over_five_percent_then_decays_to_zero():
    steps = 10
    lrs = [lr_at(e, 20, 0.1, "warmup-cosine", step=i, steps_per_epoch=steps) for e in range(20) for i in range(steps)]
    warm = math.ceil(0.05 * 200)  # 10 steps: the whole first epoch
    assert lrs[:warm] == pytest.approx([0.1 * (s + 1) / warm for s in range(warm)])
    assert lrs[warm] == pytest.approx(0.1) and max(lrs) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :], strict=False))
    assert lrs[-1] < 0.1 * 1e-3


def test_the_loop_changes_a_per_step_schedule_inside_the_epoch(digits):
    """warmup-cosine moves the lr every step (read from the optimizer at each step), the others once per epoch."""

    class RecordLr(Callback):
        def on_train_start(self, model, optimizer):
            self.optimizer, self.lrs = optimizer, []

        def after_step(self, model):
            self.lrs.append(self.optimizer.param_groups[0]["lr"])

    split = train_val_split(digits, 0.2)
    steps = -(-len(split.y_train) // 128)
    for schedule in ("warmup-cosine", "step"):
        seed_everything(0)
        model = build_model(default_spec("vgg11", 1, 10, 8, 0.25))
        cfg = TrainConfig(epochs=2, batch_size=128, lr=0.05, schedule=schedule, augment="none")
        rec = RecordLr()
        history = train(model, split, cfg, [rec])
        expect = [lr_at(e, 2, 0.05, schedule, step=i, steps_per_epoch=steps) for e in range(2) for i in range(steps)]
        assert rec.lrs == pytest.approx(expect)
        assert [m.lr for m in history.epochs] == pytest.approx([expect[0], expect[steps]])
    assert len(set(expect)) == 2  # step: one lr per epoch


@pytest.mark.parametrize("method, ratio", [("magnitude", 0.7), ("l1-norm", 0.5)])
def test_scratch_init_is_never_the_base_init_for_any_final_seed(method, ratio):
    """Before issue 11, scratch trials called seed_everything(spec.seed) like the base did: with magnitude
    pruning the widths are the base's, so Scratch-E/B started from exactly the lottery ticket."""
    spec = default_spec("resnet20", 3, 10, 8)
    for seed in final_seeds(0, 3):  # every final seed s: base(s) init is drawn from s, as the final evaluation does
        seed_everything(seed)
        base = build_model(spec)
        init_state = {k: v.clone() for k, v in base.state_dict().items()}
        pruned = prune(base, spec, PruneConfig(method, ratio=ratio))
        f0 = forward_flops(base, (3, 8, 8))
        scratch = build_arm("scratch", pruned, spec, BASE, f0, seed=seed).model.state_dict()
        ticket = build_arm("lottery", pruned, spec, BASE, f0, seed=seed, init_state=init_state).model.state_dict()
        convs = [k for k, v in scratch.items() if k.endswith("weight") and v.dim() == 4]
        assert convs
        for k in convs:
            assert scratch[k].shape == ticket[k].shape
            assert not torch.equal(scratch[k], ticket[k]), f"seed {seed}: {k} is the lottery init"
    assert scratch_init_seed(0) != 0 and scratch_init_seed(0) != scratch_init_seed(1)
    assert derive_seed(0, "a") != derive_seed(0, "b") and all(scratch_init_seed(s) >= 2**31 for s in range(100))


def test_unpruned_arm_trains_the_large_model_from_its_own_init():
    spec = default_spec("resnet20", 3, 10, 8)
    seed_everything(0)
    base = build_model(spec)
    pruned = prune(base, spec, PruneConfig("l1-norm", ratio=0.5))
    f0 = forward_flops(base, (3, 8, 8))
    arm = build_arm("unpruned", pruned, spec, BASE, f0, seed=0)
    assert arm.forward_macs == f0 and not arm.inherits_base and arm.config.epochs == 20
    w = "blocks.0.conv1.weight"
    assert arm.model.state_dict()[w].shape == base.state_dict()[w].shape
    assert not torch.equal(arm.model.state_dict()[w], base.state_dict()[w])
    assert build_arm("finetune", pruned, spec, BASE, f0).inherits_base


def test_pareto_mode_has_one_scratch_study_feeding_both_rows():
    spec = load_spec(TINY)
    assert study_arms(spec) == ["finetune", "scratch"]
    assert rows_of(spec, "scratch") == ["scratch-e", "scratch-b"]
    fixed = load_spec(TINY, ["study.mode='fixed-budget'"])
    assert study_arms(fixed) == ["finetune", "scratch-e", "scratch-b"]


def test_every_arm_gets_named_baselines_with_sources():
    spec = load_spec(TINY)
    caps = budgets(spec.base.train_config(0), 4_000, 1_000, 100)
    assert (caps.epochs_e, caps.epochs_b) == (3, 12)
    assert caps.train_b == caps.base_train == 3 * 4_000 * 3 * 100
    assert caps.pipeline_p == caps.base_train + 3 * 1_000 * 3 * 100
    ft = {b.name: b for b in baseline_trials(spec, "finetune", caps, spec.base.train_config(0))}
    assert set(ft) == {"paper", "rewind"}
    assert ft["paper"].params == {"lr": pytest.approx(0.0005), "schedule": "constant", "augment": "none", "epochs": 1}
    assert ft["rewind"].params == {"lr": 0.05, "schedule": "step", "augment": "none", "epochs": 3}
    assert "Renda" in ft["rewind"].source and "Liu" in ft["paper"].source
    sc = {b.name: b for b in baseline_trials(spec, "scratch", caps, spec.base.train_config(0))}
    assert set(sc) == {"paper@E", "paper@B", "literature"}
    assert (sc["paper@E"].params["epochs"], sc["paper@B"].params["epochs"]) == (3, 12)
    assert (sc["paper@E"].row, sc["paper@B"].row) == ("scratch-e", "scratch-b")
    assert sc["literature"].source and sc["literature"].params["lr"] == 0.01
    for b in [*ft.values(), *sc.values()]:
        assert b.params["schedule"] in spec.space.schedule and b.params["augment"] in spec.space.augment


@pytest.mark.parametrize("path", sorted(SPECS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_spec_searches_all_four_schedules_with_paper_and_rewind(path):
    spec = load_spec(str(path))
    assert set(spec.space.schedule) == set(SCHEDULES) == {"step", "cosine", "constant", "warmup-cosine"}
    # rewind is fine-tune's baseline: a Section 5 spec that trains no fine-tune arm has no use for it
    assert {"paper", "rewind"} <= set(spec.study.baselines) or (
        "finetune" not in spec.study.arms and "paper" in spec.study.baselines
    )
    assert all(b.source for b in spec.baselines.values())  # every spec baseline says what it stands for


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["space.schedule=['step', 'cosine']"], "the fine-tune paper baseline: 'constant' is not in space.schedule"),
        (["baselines.literature.schedule='cosine'", "space.schedule=['step', 'constant']"], "baselines.literature"),
        (["baselines.paper={lr=0.1}"], "baselines.paper: a built-in baseline"),
        (["study.baselines=['paper', 'ours']"], "study.baselines names ['ours']"),
        (["space.schedule=['linear']"], "unknown schedule 'linear'"),
        (["space.batch_size=[32, 128]"], "base.batch_size: 64 is not in space.batch_size"),
    ],
)
def test_baselines_must_be_points_of_the_space(overrides, message):
    with pytest.raises(SpecError) as e:
        load_spec(TINY, overrides)
    assert message in str(e.value)


def test_a_version_bump_changes_the_digests_of_the_trunk_studies_and_final_runs(monkeypatch):
    """Issue 24: a method's or an arm builder's version enters the digests that find results again (versions
    of 1 leave the older digests as they were)."""
    from dataclasses import replace

    from rethink.arms import ARM_VERSIONS
    from rethink.prune.registry import METHODS
    from study.search.trunk import prune_config, pruned_digest  # the trunk's names for them

    spec = load_spec(TINY)  # l1-norm; its base trains without the method
    slim = load_spec(TINY, ["prune.method=slimming", "base.sparsity=1e-4"])  # its base trains with the method
    assert "code_versions" not in spec.study_fields()

    def digests():
        return (
            spec.digest(),
            json.dumps(spec.study_fields(), sort_keys=True),  # the studies' identity; final runs digest it too
            pruned_digest(spec.base_digest(), prune_config(spec)),
            spec.base_digest(),
            slim.base_digest(),
        )

    before = digests()
    monkeypatch.setitem(METHODS, "l1-norm", replace(METHODS["l1-norm"], version=2))
    bumped = digests()
    assert [a != b for a, b in zip(before, bumped, strict=True)] == [True, True, True, False, False]
    assert spec.study_fields()["code_versions"] == {"method:l1-norm": 2}
    monkeypatch.setitem(METHODS, "slimming", replace(METHODS["slimming"], version=2))
    assert slim.base_digest() != before[4]  # slimming's base trains with its L1 penalty: the base is made again
    monkeypatch.setitem(ARM_VERSIONS, "finetune", 2)
    assert spec.study_fields()["code_versions"] == {"arm:finetune": 2, "method:l1-norm": 2}


def test_magnitude_pruned_scratch_uses_its_own_arm_builder_version():
    magnitude = load_spec(TINY, ["prune.method=magnitude"])
    assert magnitude.code_versions() == {"arm:scratch-unstructured": 2}  # the official masked init (below)
    assert load_spec(TINY).code_versions() == {}  # structured scratch: unchanged, its studies stay valid


def test_scratch_init_of_a_weight_level_pruned_model_follows_the_official_code():
    """Compared with Eric-mingjie/rethinking-network-pruning cifar/weight-level/cifar_E.py (lines 205-211) and
    cifar_B.py (213-219): each conv is drawn from N(0, 2/n) with n = mask.sum() / in_channels, then masked.
    Masking the dense init instead leaves the kept weights sqrt(1/density) too small (3.2x at 90%)."""
    spec = default_spec("vgg11", 3, 10, 32)
    seed_everything(0)
    base = build_model(spec)
    pruned = prune(base, spec, PruneConfig("magnitude", ratio=0.9))
    f0 = forward_flops(base, (3, 32, 32))
    model = build_arm("scratch-e", pruned, spec, BASE, f0, seed=0).model
    checked = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Conv2d):
            continue
        mask = pruned.masks[f"{name}.weight"]
        w = module.weight.detach()
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))  # pruned weights exactly zero
        kept = w[mask]
        if kept.numel() < 2000:
            continue  # too few draws for a 10% check of the spread
        expected = math.sqrt(2.0 / (float(mask.sum()) / module.in_channels))
        assert kept.std().item() == pytest.approx(expected, rel=0.1), name
        density = float(mask.float().mean())  # the global threshold leaves each layer its own density
        dense = math.sqrt(2.0 / (module.kernel_size[0] * module.kernel_size[1] * module.out_channels))
        assert kept.std().item() / dense == pytest.approx(1 / math.sqrt(density), rel=0.1)  # the masked dense init: 1
        checked += 1
    assert checked >= 4


def test_bn_init_sets_the_conv_batchnorms_only_as_the_official_l1_norm_vgg_does():
    """Compared with cifar/l1-norm-pruning/models/vgg.py `_initialize_weights`: BatchNorm2d scales filled with
    0.5; the classifier's BatchNorm1d is left at 1. The shipped cifar10-l1-vgg16-a spec says bn_init = 0.5."""
    from dataclasses import replace

    spec = load_spec("cifar10-l1-vgg16-a")
    assert spec.bn_init == 0.5 and spec.classifier == "default"  # Li et al.'s head: Linear-BN1d-ReLU-Linear
    model = build_model(replace(default_spec(spec.model, 3, 10, 32), bn_init=spec.bn_init))
    bn2d = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn1d = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bn2d) == 13 and len(bn1d) == 1
    assert all(torch.all(w == 0.5) for w in bn2d) and all(torch.all(w == 1.0) for w in bn1d)


def test_the_weight_level_vgg_is_built_as_the_official_code_builds_it():
    """Compared with cifar/weight-level/models/cifar/vgg.py: Conv2d with its bias (zeroed), weights from
    N(0, 2/n) with n = k*k*in_channels; BatchNorm2d at 1; Linear(512, classes) from N(0, 0.01). The shipped
    magnitude specs ask for it."""
    from dataclasses import replace

    spec = load_spec("cifar10-magnitude-vgg19-60")
    assert (spec.conv_init, spec.classifier) == ("weight-level", "linear")
    model = build_model(replace(default_spec("vgg19", 3, 10, 32, classifier="linear"), conv_init=spec.conv_init))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and all(m.bias is not None and torch.all(m.bias == 0) for m in convs)
    for m in convs[2:]:  # the wide layers: enough draws for a 5% check
        expected = math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.in_channels))
        assert m.weight.std().item() == pytest.approx(expected, rel=0.05)
    (head,) = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.1) and torch.all(head.bias == 0)
    assert all(torch.all(m.weight == 1) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    default = build_model(default_spec("vgg19", 3, 10, 32, classifier="linear"))
    assert all(m.bias is None for m in default.modules() if isinstance(m, torch.nn.Conv2d))  # Li et al.: no bias


def test_the_random_control_is_drawn_again_for_every_final_seed():
    """Issue 25: the control's channels come from each final seed's own stream (not once for all seeds), at
    the method's widths, so its final spread includes the selection's noise; the search keeps the spec's."""
    from study.search.trunk import control_for

    spec = load_spec(TINY, ["study.arms=['finetune', 'finetune-random']"])
    arch = default_spec("vgg11", 1, 10, 8, 0.25)
    seed_everything(0)
    base = build_model(arch)
    pruned = prune(base, arch, PruneConfig("l1-norm", ratio=0.5))
    draws = {s: control_for(spec, base, arch, pruned, s) for s in final_seeds(0, 3)}
    assert {d.config.seed for d in draws.values()} == {derive_seed(s, "random") for s in final_seeds(0, 3)}
    assert all(d.spec.widths == pruned.spec.widths for d in draws.values())  # the method's widths, every draw
    assert len({json.dumps(d.keep, sort_keys=True) for d in draws.values()}) == 3  # three different selections
    assert control_for(spec, base, arch, pruned).config.seed == derive_seed(spec.seed, "random")  # the search's
