"""The recipe's optimizer: SGD (the paper's) or AdamW (modern recipes, issue 39), label smoothing, mixup and
CutMix, and how each reaches a spec's base, its arms and the fused engines."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from conftest import TINY
from rethink.arms import default_recipe
from rethink.config import ConfigError, TrainConfig
from rethink.fuse import fusion_plan
from rethink.models import build_model, default_spec
from rethink.runtime import Runtime
from rethink.splits import train_val_split
from rethink.train import Job, make_optimizer, seed_everything, train
from study.plan.load import load_spec
from study.plan.spec import SpecError


def _linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_decays_weights_of_two_or_more_dimensions_only_and_sgd_decays_all(fused):
    """With zero gradients the only change is weight decay: AdamW's decoupled w -= lr*wd*w on the matrix,
    none on the bias and the norm scale; SGD's L2 moves every tensor."""
    lr, wd = 0.1, 0.5
    for name, decays_1d in (("adamw", False), ("sgd", True)):
        model = _linear()
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        opt = make_optimizer(model, TrainConfig(optimizer=name, lr=lr, weight_decay=wd, momentum=0.9), fused)
        assert isinstance(opt, torch.optim.AdamW if name == "adamw" else torch.optim.SGD)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        for k, p in model.named_parameters():
            if p.dim() >= 2 or decays_1d:
                assert torch.allclose(p, before[k] * (1 - lr * wd)), (name, k)
            else:
                assert torch.equal(p, before[k]), (name, k)


def test_adamw_takes_momentum_as_beta1_and_matches_torchs_update():
    model, twin = _linear(), _linear()
    config = TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.05, momentum=0.8)
    ours = make_optimizer(model, config)
    theirs = torch.optim.AdamW(
        [{"params": [twin[0].weight], "weight_decay": 0.05}, {"params": [twin[0].bias, *twin[1].parameters()]}],
        lr=0.01,
        betas=(0.8, 0.999),
        weight_decay=0.0,
    )
    x = torch.randn(8, 4)
    for _ in range(3):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7)


def test_the_default_optimizer_leaves_every_digest_as_it_was():
    sgd, adamw = TrainConfig(), TrainConfig(optimizer="adamw", lr=1e-3)
    assert "optimizer" not in sgd.to_dict() and adamw.to_dict()["optimizer"] == "adamw"
    assert TrainConfig(**sgd.to_dict()) == sgd and TrainConfig(**adamw.to_dict()) == adamw
    assert sgd.digest() != replace(sgd, optimizer="adamw").digest()
    spec = load_spec(TINY)
    assert "optimizer" not in spec.dump()["base"] and "label_smoothing" not in spec.dump()["base"]
    assert load_spec(TINY, ["base.optimizer='adamw'"]).base_digest() != spec.base_digest()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "adam"}, "optimizer='adam'; valid names: sgd, adamw"),
        ({"optimizer": "adamw", "nesterov": True}, "nesterov=True is SGD's"),
    ],
)
def test_bad_optimizer_settings_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_a_specs_base_optimizer_smoothing_and_mixing_reach_every_arms_recipe():
    adamw = [
        "base.optimizer='adamw'",
        "base.lr=0.002",
        "base.label_smoothing=0.1",
        "space.lr={ low = 1e-5, high = 0.01 }",
    ]
    spec = load_spec(TINY, [*adamw, "base.mixup=0.8", "base.cutmix=1.0"])
    base = spec.base.train_config(0)
    modern = ("adamw", 0.1, 0.8, 1.0)
    assert (base.optimizer, base.label_smoothing, base.mixup, base.cutmix) == modern
    for arm in ("finetune", "scratch-e", "scratch-b"):
        recipe = default_recipe(arm, base, 1e6, 3e5)
        assert (recipe.optimizer, recipe.label_smoothing, recipe.mixup, recipe.cutmix) == modern
    with pytest.raises(SpecError, match="base: .*nesterov is SGD's"):
        load_spec(TINY, ["base.optimizer='adamw'", "base.nesterov=true"])
    with pytest.raises(SpecError, match="base.optimizer"):
        load_spec(TINY, ["base.optimizer='lion'"])


def test_adamw_trains_a_model_that_beats_chance(digits):
    split = train_val_split(digits, 0.15, seed=0)
    seed_everything(0)
    model = build_model(default_spec("vgg11", 1, 10, 8, 0.25))
    config = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, epochs=4, augment="none", schedule="cosine")
    history = train(model, split, config)
    assert history.final.eval_acc > 0.8  # chance is 0.10


def test_adamw_runs_never_stack_as_sgd_ones_do():
    def jobs(optimizer):
        out = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            config = TrainConfig(optimizer=optimizer, lr=1e-3, epochs=1, seed=seed)
            out.append(Job(build_model(default_spec("vgg11", 1, 10, 8, 0.25)), config))
        return out

    stacked = Runtime("cpu", fuse="stacked")
    assert fusion_plan(jobs("sgd"), stacked) == [("stacked", 2)] * 2
    assert fusion_plan(jobs("adamw"), stacked) == [("off", 1)] * 2  # the stacked update is SGD's


def test_a_study_with_a_modern_base_recipe_trains_every_run_with_it(tracking_uri, tmp_path):
    import mlflow

    from conftest import assert_stores_agree, study_args
    from study.commands.cli import main

    sets = ["base.optimizer='adamw'", "base.lr=0.003", "base.weight_decay=0.05", "space.lr={ low = 1e-5, high = 0.01 }"]
    sets += ["base.label_smoothing=0.1", "base.mixup=0.8", "base.cutmix=1.0", "study.n_trials=1"]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = study_args(storage, tmp_path / "runs", "--no-report", *[a for s in sets for a in ("--set", s)])
    assert main(args) == 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=2000)
    trained = [r for r in runs if r.data.tags.get("rethink.kind") in ("base", "trial", "final", "confirm")]
    assert {r.data.tags["rethink.kind"] for r in trained} == {"base", "trial"} and len(trained) > 5  # --no-report
    recipe = ("train.optimizer", "train.label_smoothing", "train.mixup", "train.cutmix")
    assert {tuple(r.data.params.get(k) for k in recipe) for r in trained} == {("adamw", "0.1", "0.8", "1.0")}
    base = next(r for r in runs if r.data.tags.get("rethink.kind") == "base")
    assert base.data.metrics["val_acc"] > 0.3  # learned: chance is 0.10
    assert_stores_agree(storage, "tiny", client)
