"""The fair experiment (issue 11), at unit level: schedules every arm can search, independent init
streams, baselines that are points of the space, and the budgets that define the report's rows."""

import math

import pytest
import torch

from conftest import TINY
from rethink.arms import build_arm, derive_seed, scratch_init_seed
from rethink.budget import SCHEDULES, lr_at
from rethink.data import train_val_split
from rethink.flops import forward_flops
from rethink.models import build_model, default_spec
from rethink.prune import PruneConfig, prune
from rethink.train import Callback, TrainConfig, seed_everything, train
from study.plan.layout import baseline_trials, budgets, rows_of, study_arms
from study.plan.spec import SPECS_DIR, SpecError, load_spec

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
    for seed in range(3):  # every final seed s: base(s) init is drawn from s, as the final evaluation does
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
    assert {"paper", "rewind"} <= set(spec.study.baselines)
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
