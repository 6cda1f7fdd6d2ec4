import pytest
import torch

from rethink.arms import ARCH_ARMS, ARMS, ArmError, build_arm, default_recipe
from rethink.flops import forward_flops
from rethink.models import build_model, default_spec
from rethink.prune import KeepMasked, PruneConfig, prune
from rethink.train import TrainConfig

BASE = TrainConfig(epochs=160)


def _pruned(method="l1-norm", ratio=0.5):
    spec = default_spec("resnet20", 3, 10, 8)
    torch.manual_seed(0)
    init = build_model(spec)
    init_state = {k: v.clone() for k, v in init.state_dict().items()}
    trained = build_model(spec)  # stands in for the trained base: different weights from init
    pruned = prune(trained, spec, PruneConfig(method, ratio=ratio))
    return spec, trained, pruned, init_state


def test_paper_recipes_per_arm():
    finetune = default_recipe("finetune", BASE, 3.13e8, 2.06e8)
    assert (finetune.epochs, finetune.lr, finetune.schedule) == (40, pytest.approx(0.001), "constant")
    assert default_recipe("scratch-e", BASE, 3.13e8, 2.06e8) == BASE
    scratch_b = default_recipe("scratch-b", BASE, 3.13e8, 2.06e8)
    assert scratch_b.epochs == 243 and scratch_b.milestones == (0.5, 0.75) and scratch_b.lr == 0.1
    with pytest.raises(ArmError, match="valid names"):
        default_recipe("warm-start", BASE, 1, 1)


def test_structured_arms_build_the_right_models():
    spec, trained, pruned, init_state = _pruned()
    f0 = forward_flops(trained, (3, 8, 8))
    arms = {a: build_arm(a, pruned, spec, BASE, f0, seed=1, init_state=init_state) for a in ARMS if a not in ARCH_ARMS}
    # Section 5's arms build their own architecture (tests/test_arch_arms.py)
    inherited = pruned.model.state_dict()["blocks.0.conv1.weight"]
    assert torch.equal(arms["finetune"].model.state_dict()["blocks.0.conv1.weight"], inherited)
    for arm in ("scratch-e", "scratch-b"):
        weights = arms[arm].model.state_dict()["blocks.0.conv1.weight"]
        assert weights.shape == inherited.shape and not torch.equal(weights, inherited)
    ticket = arms["lottery"].model.state_dict()["blocks.0.conv1.weight"]
    assert torch.equal(ticket, init_state["blocks.0.conv1.weight"][pruned.keep[0]])
    assert arms["scratch-b"].config.epochs > arms["scratch-e"].config.epochs == 160
    assert all(arm.callbacks == [] for arm in arms.values())


def test_unstructured_scratch_keeps_masks_and_reinitializes():
    spec, trained, pruned, init_state = _pruned("magnitude", 0.7)
    arm = build_arm("scratch-e", pruned, spec, BASE, forward_flops(trained, (3, 8, 8)), seed=3)
    (callback,) = arm.callbacks
    assert isinstance(callback, KeepMasked)
    params = dict(arm.model.named_parameters())
    for name, mask in pruned.masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0
        assert not torch.equal(params[name][mask], dict(trained.named_parameters())[name][mask])
    ticket = build_arm("lottery", pruned, spec, BASE, 1.0, init_state=init_state).model
    w = dict(ticket.named_parameters())["blocks.0.conv1.weight"]
    mask = pruned.masks["blocks.0.conv1.weight"]
    assert torch.equal(w, init_state["blocks.0.conv1.weight"] * mask)


def test_unstructured_scratch_b_budget_uses_nonzero_flops():
    spec, trained, pruned, _ = _pruned("magnitude", 0.5)
    arm = build_arm("scratch-b", pruned, spec, BASE, forward_flops(trained, (3, 8, 8)))
    assert 200 < arm.config.epochs < 400


def test_lottery_needs_initial_weights():
    spec, trained, pruned, _ = _pruned()
    with pytest.raises(ArmError, match="initial"):
        build_arm("lottery", pruned, spec, BASE, 1.0)
