"""Iterative magnitude pruning (the paper's Section 6 lottery tickets): the masks of each round, the
rewind to init, the retraining, its place in the budgets, and a study that prunes iteratively end to end."""

import mlflow
import pytest
import torch
from torch import nn

from conftest import TINY, assert_stores_agree
from rethink.flops import training_flops
from rethink.models import build_model, default_spec
from rethink.prune import KeepMasked, PruneConfig, PruneError, iterative_magnitude, prune, round_share
from rethink.prune.magnitude import conv_weights, magnitude_masks
from rethink.splits import train_val_split
from rethink.train import TrainConfig, seed_everything, train
from study.commands.cli import main
from study.plan.layout import budgets
from study.plan.load import load_spec
from study.plan.spec import SpecError


@pytest.mark.parametrize(("ratio", "rounds"), [(0.3, 2), (0.8, 3), (0.9, 5), (0.5, 1)])
def test_each_round_removes_the_same_share_of_what_is_left_and_the_rounds_reach_the_ratio(ratio, rounds):
    share = round_share(ratio, rounds)
    left = 1.0
    for _ in range(rounds):
        left -= share * left
    assert 1 - left == pytest.approx(ratio)


def _official_iterative_masks(model: nn.Module, percent: float) -> dict[str, torch.Tensor]:
    """cifar/lottery-ticket/weight-level/cifar_prune_iterative.py of Eric-mingjie/rethinking-network-pruning
    (commit 2ac473d), restated: every conv |w| (pruned ones are zero) sorted ascending into y;
    thre = y[total - nonzero + int(nonzero * percent)]; a weight is kept iff |w| > thre."""
    w = torch.cat([m.weight.detach().abs().flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    nonzero = int((w > 0).sum())
    y, _ = torch.sort(w)
    thre = y[w.numel() - nonzero + int(nonzero * percent)]
    return {n + ".weight": m.weight.detach().abs() > thre for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("percent", [0.2, 0.5])
def test_a_later_round_ranks_only_the_survivors_as_the_official_iterative_code(percent):
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    seed_everything(0)
    model = build_model(spec)
    first = magnitude_masks(model, 0.4)
    with torch.no_grad():  # the survivors move (as training moves them); the pruned stay zero
        for name, w in conv_weights(model).items():
            w.copy_(torch.randn_like(w) * first[name])
    second = magnitude_masks(model, percent, kept=first)
    official = _official_iterative_masks(model, percent)
    assert all(torch.equal(second[k], official[k]) for k in second)
    kept_before = sum(int(m.sum()) for m in first.values())
    kept_after = sum(int(m.sum()) for m in second.values())
    assert kept_before - kept_after == int(percent * kept_before) + 1  # the official index prunes y[thre] too
    assert all(not (second[k] & ~first[k]).any() for k in first)  # a pruned weight never returns


def test_a_later_round_per_layer_removes_the_share_of_each_layers_survivors():
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    model = build_model(spec)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # distinct magnitudes: no ties at a threshold
        for w in conv_weights(model).values():
            w.copy_((torch.randperm(w.numel(), generator=gen).float() + 1).view_as(w))
    first = magnitude_masks(model, 0.5, "layer")
    second = magnitude_masks(model, 0.5, "layer", kept=first)
    for name, m in first.items():
        assert int(m.sum()) - int(second[name].sum()) == int(0.5 * int(m.sum()))


def test_iterative_pruning_rewinds_the_survivors_to_init_retrains_and_reaches_the_ratio(digits):
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    seed_everything(0)
    base = build_model(spec)
    init_state = {k: v.clone() for k, v in base.state_dict().items()}
    split = train_val_split(digits, 0.2, 0)
    train(base, split, TrainConfig(epochs=1, lr=0.05, augment="none"))
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    seen: list[tuple[int, dict, dict]] = []
    trained_last: list[nn.Module] = []

    def retrain(k, ticket, masks):
        state = {n: v.clone() for n, v in ticket.state_dict().items()}
        seen.append((k, state, {n: m.clone() for n, m in masks.items()}))
        history = train(ticket, split, TrainConfig(epochs=1, lr=0.05, augment="none", seed=k), [KeepMasked(masks)])
        trained_last[:] = [ticket]
        return ticket, history.images_seen

    config = PruneConfig("magnitude", ratio=0.8, rounds=3)
    pruned, rounds = iterative_magnitude(base, spec, config, init_state, retrain, lambda m: 1)
    assert [k for k, _, _ in seen] == [2, 3] and [r.index for r in rounds] == [2, 3]
    for _, state, masks in seen:  # each ticket: the init's weights, the round's masks applied
        for name, value in init_state.items():
            expected = value * masks[name] if name in masks else value
            assert torch.equal(state[name], expected), name
    for (_, _, before), (_, _, after) in zip(seen, [*seen[1:], (0, None, pruned.masks)], strict=True):
        assert all(not (after[k] & ~before[k]).any() for k in before)  # nested
    total = sum(m.numel() for m in pruned.masks.values())
    removed = sum(int((~m).sum()) for m in pruned.masks.values())
    assert abs(removed - 0.8 * total) <= 3  # each round's official index removes one weight more
    assert [r.sparsity for r in rounds] == pytest.approx([1 - (1 - round_share(0.8, 3)) ** k for k in (1, 2)], abs=1e-3)
    assert all(r.images_seen == len(split.y_train) for r in rounds)
    last = dict(trained_last[0].named_parameters())
    for name, p in pruned.model.named_parameters():  # fine-tuning continues from the last trained ticket
        expected = last[name].detach() * pruned.masks[name] if name in pruned.masks else last[name].detach()
        assert torch.equal(p.detach(), expected)
    assert all(torch.equal(base.state_dict()[k], v) for k, v in base_before.items())  # the base untouched


def test_iterative_pruning_is_refused_where_it_does_not_apply():
    with pytest.raises(PruneError, match="rounds=0"):
        PruneConfig("magnitude", ratio=0.5, rounds=0)
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    with pytest.raises(PruneError, match="iterative pruning trains"):
        prune(build_model(spec), spec, PruneConfig("magnitude", ratio=0.5, rounds=2))
    with pytest.raises(SpecError, match=r"prune\.rounds = 3: iterative pruning is for unstructured"):
        load_spec(TINY, ["prune.rounds=3"])  # the tiny spec prunes with l1-norm


def test_the_rounds_training_is_in_the_pipeline_and_in_p_but_not_in_b():
    base = TrainConfig(epochs=10)
    plain = budgets(base, 4_000, 1_000, 100)
    rounds = budgets(base, 4_000, 1_000, 100, prune_train=training_flops(2_000, 2 * 10 * 100))
    assert rounds.train_b == plain.train_b and rounds.epochs("B") == plain.epochs("B")
    assert rounds.inherited == plain.base_train + training_flops(2_000, 2 * 10 * 100)
    assert rounds.pipeline_p == rounds.inherited + rounds.train_e
    assert rounds.epochs("P") == plain.epochs("P") + 40  # 2 rounds × 10 epochs at twice the pruned MACs


IMP = [
    "--set", "name=tiny-imp",
    "--set", "prune.method=magnitude",
    "--set", "prune.ratio=0.8",
    "--set", "prune.rounds=3",
    "--set", 'study.arms=["finetune", "scratch-e", "scratch-b", "lottery"]',
    "--set", "study.n_trials=1",
    "--set", 'study.baselines=["paper"]',
    "--set", "space.epochs.high=24",
    "--set", "select.bases=1",
]  # fmt: skip


@pytest.mark.slow
def test_a_study_prunes_every_base_iteratively_and_accounts_for_the_rounds(tracking_uri, tmp_path):
    storage, workdir = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "runs"
    args = ["study", TINY, "--storage", storage, "--workdir", str(workdir), "--report-dir", str(tmp_path / "r")]
    assert main([*args, *IMP]) == 0
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny-imp")

    def runs(query: str):
        return client.search_runs([exp.experiment_id], query, max_results=1000)

    rounds = runs("tags.`rethink.kind` = 'prune-round'")
    by_base: dict[str, list] = {}
    for r in rounds:
        by_base.setdefault(r.info.run_name.rpartition(":")[0], []).append(r)
    # the trunk's base, one confirmation base and both final seeds' bases: rounds 2 and 3 each
    assert len(by_base) == 4 and "prune" in by_base
    for rs in by_base.values():
        assert sorted(r.data.params["round"] for r in rs) == ["2", "3"]
        assert all(r.info.status == "FINISHED" for r in rs)
        s2, s3 = (r.data.metrics["sparsity"] for r in sorted(rs, key=lambda r: r.data.params["round"]))
        assert s2 == pytest.approx(1 - 0.2 ** (1 / 3), abs=1e-3) and s3 == pytest.approx(1 - 0.2 ** (2 / 3), abs=1e-3)

    (base,) = runs("tags.`rethink.kind` = 'base'")
    trunk_rounds = sum(r.data.metrics["train_flops"] for r in by_base["prune"])
    inherited = base.data.metrics["train_flops"] + trunk_rounds
    for arm, carried in (("finetune", inherited), ("lottery", inherited), ("scratch", 0.0)):
        trials = runs(f"tags.`rethink.kind` = 'trial' and tags.arm = '{arm}'")
        assert trials
        for t in trials:
            m = t.data.metrics
            assert m["pipeline_flops"] - m["train_flops"] == pytest.approx(carried, rel=1e-9)

    (prune_run,) = runs("tags.`rethink.kind` = 'prune'")
    assert prune_run.data.metrics["rounds_train_flops"] == pytest.approx(trunk_rounds)
    (pruned_file,) = workdir.glob("tiny-imp/base-*/pruned-*.pt")
    masks = torch.load(pruned_file, weights_only=True)["masks"]
    total = sum(m.numel() for m in masks.values())
    assert abs(sum(int((~m.bool()).sum()) for m in masks.values()) - 0.8 * total) <= 3

    finals = runs("tags.`rethink.kind` = 'final' and tags.arm = 'finetune'")
    for f in finals:  # a final fine-tune run carries its own seed's base and rounds
        seed_rounds = [r for r in rounds if r.info.run_name.startswith(f"final seed {f.data.tags['base_seed']}:")]
        (seed_base,) = [
            r for r in runs("tags.`rethink.role` = 'base'") if r.info.run_id == f.data.tags["rethink.base_run"]
        ]
        carried = seed_base.data.metrics["train_flops"] + sum(r.data.metrics["train_flops"] for r in seed_rounds)
        assert f.data.metrics["pipeline_flops"] - f.data.metrics["train_flops"] == pytest.approx(carried, rel=1e-9)
    report = (tmp_path / "r" / "tiny-imp" / "report.md").read_text()
    assert "magnitude 0.8, iterative: 3 rounds" in report and "retraining rounds of iterative pruning" in report

    # Killed after its rounds, before the pruned model was saved: a rerun trains no round again.
    pruned_file.unlink()
    assert main([*args, *IMP]) == 0
    assert len(runs("tags.`rethink.kind` = 'prune-round'")) == len(rounds)
    again = torch.load(pruned_file, weights_only=True)["masks"]
    assert all(torch.equal(again[k], masks[k]) for k in masks)
    assert not runs("attributes.status = 'RUNNING'")
    assert_stores_agree(storage, "tiny-imp", client)


def test_smoke_mode_keeps_iterative_pruning_at_two_rounds():
    from study.plan.smoke import smoke_spec

    spec = load_spec("cifar10-lottery-vgg16-iterative-lr0.1")
    assert spec.prune.rounds == 5 and smoke_spec(spec).prune.rounds == 2


def test_the_cost_counts_the_rounds_of_every_base():
    from rethink.data import DatasetShape
    from study.plan.cost import spec_cost

    shape = DatasetShape("cifar10", 5_000, 1_000, 3, 32, 10)
    one_shot = spec_cost(load_spec(TINY, ["prune.method=magnitude", "prune.ratio=0.8"]), shape)
    imp = spec_cost(load_spec(TINY, ["prune.method=magnitude", "prune.ratio=0.8", "prune.rounds=3"]), shape)
    stages = {s.name: s for s in imp.stages}
    assert stages["pruning rounds (search split)"].runs == 2
    assert stages["pruning rounds (search split)"].macs == pytest.approx(imp.budgets.prune_train)
    assert stages["final: pruning rounds"].runs == 2 * 2  # two final seeds' bases, two rounds each
    assert stages["confirmation bases"].runs == 1 * 3  # one base and its two rounds
    assert imp.budgets.train_b == one_shot.budgets.train_b
    assert imp.budgets.pipeline_p == pytest.approx(one_shot.budgets.pipeline_p + imp.budgets.prune_train)
    # a round trains a denser network than the final one: more than the pruned model's epochs per round
    assert imp.budgets.epochs_prune > 2 * imp.budgets.epochs_e
