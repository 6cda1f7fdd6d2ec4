"""Confirmation over bases (issue 34): the picks of arms that inherit a base are confirmed on other bases
trained on the search split, so a recipe that suits the search's one base does not win on its luck; and
every final run is held to its own seed's budget."""

import json
from dataclasses import replace

import mlflow
import numpy as np
import pytest
import torch

from conftest import TINY, assert_stores_agree
from rethink.arms import confirm_base_seeds
from rethink.checkpoint import save_checkpoint
from rethink.models import build_model
from rethink.train import Runtime, seed_everything, train
from study.commands.cli import main
from study.final.confirm import Candidate, best_candidate, confirm_picks
from study.final.picks import choose
from study.plan.layout import Budgets, seed_epochs
from study.plan.load import load_spec
from study.search.finished import open_finished
from study.search.runner import RunOptions
from study.search.trunk import base_arch, load_data

CAPPED = ["study.mode=capped", 'space.epochs={ of = "cap", low = 0.2 }']
# One study, fine-tune: one searched trial and the paper (short, low lr) and rewind baselines; the top 3 are
# every trial, each confirmed on 2 more seeds.
FINETUNE_ONLY = [*CAPPED, 'study.arms=["finetune"]', "study.n_trials=1", "select.top_k=3", "select.seeds=2"]
FINETUNE_ONLY += ['verdict.budgets=["E"]', 'verdict.primary="1@E"', "base.epochs=6", "base.lr=0.1", "prune.ratio=0.2"]
FINETUNE_ONLY += ["study.seed=1"]  # its one searched trial: a short fine-tune at a low lr (2 epochs, lr 7e-4)


def _args(overrides: list[str], folder) -> list[str]:
    out = ["study", TINY, "--storage", f"sqlite:///{folder / 'optuna.db'}", "--workdir", str(folder / "runs")]
    for o in overrides:
        out += ["--set", o]
    return out


def _plant_lucky_base(spec, workdir) -> None:
    """The search's base, made lucky on validation: trained on the search's training split and its
    validation split too (so it fits the validation images), saved where the trunk looks for it. A short,
    low-lr fine-tune keeps that fit; a long one at the base's lr washes it out; other bases have none."""
    ds, split = load_data(spec)
    leaky = replace(
        split,
        x_train=np.concatenate([split.x_train, split.x_eval]),
        y_train=np.concatenate([split.y_train, split.y_eval]),
        constants=tuple(tuple(float(v) for v in c) for c in split.train_stats),  # the search split's own
    )
    arch = base_arch(spec, ds)
    seed_everything(spec.seed)
    model = build_model(arch)
    init = build_model(arch)
    init.load_state_dict(model.state_dict())
    config = replace(spec.base.train_config(spec.seed), epochs=20, lr=0.05)
    train(model, leaky, config, [], Runtime())
    folder = workdir / spec.name / f"base-{spec.base_digest()}"
    meta = {"digest": spec.base_digest(), "val_acc": float("nan")}
    save_checkpoint(folder / "init.pt", init, arch, meta=meta | {"epoch": 0})
    save_checkpoint(folder / "model.pt", model.cpu(), arch, meta=meta)


def test_confirmation_over_bases_does_not_pick_a_short_fine_tune_that_suits_the_search_base_alone(
    tracking_uri, tmp_path
):
    spec = load_spec(TINY, FINETUNE_ONLY)
    _plant_lucky_base(spec, tmp_path / "runs")
    assert main([*_args(FINETUNE_ONLY, tmp_path), "--no-report"]) == 0
    opts = RunOptions(f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri, tmp_path / "runs")
    search = open_finished(spec, opts)
    study = search.studies["finetune@E"]
    paper = next(t.number for t in study.trials if t.user_attrs.get("baseline") == "paper")
    choices, _ = choose(study, "finetune@E", spec, search.trunk.budgets)
    (tuned,) = [c for c in choices if c.name == "best@E"]
    assert tuned.trial == paper and len(tuned.candidates) == 3  # the search base makes the short one look best

    one_base = replace(search, spec=spec.model_copy(update={"select": spec.select.model_copy(update={"bases": 0})}))
    picked, _, _ = confirm_picks(one_base, choices, opts.runtime)
    (old,) = [c for c in picked if c.name == "best@E"]

    picked, how, cost = confirm_picks(search, choices, opts.runtime)
    (new,) = [c for c in picked if c.name == "best@E"]
    (conf,) = how
    assert conf.n_bases == 3 and cost.bases == 2 and cost.base_flops > 0
    cands = {c.trial: c for c in conf.candidates}
    seeds = confirm_base_seeds(spec.seed, 2)
    assert all(c.bases == (spec.seed, *seeds) for c in cands.values())
    # the setting: the search's base favours every short recipe over rewind, the other bases do not
    rewind = next(t.number for t in study.trials if t.user_attrs.get("baseline") == "rewind")
    for n, c in cands.items():
        if n != rewind:
            assert c.val_accs[0] > cands[rewind].val_accs[0]
            assert np.mean(c.val_accs[1:]) < np.mean(cands[rewind].val_accs[1:])
    assert old.trial != rewind  # seeds alone, on the search's base: its luck carries a short fine-tune
    assert new.trial == rewind  # over three bases it does not

    # MLflow: the confirmation bases and which base each confirmation run fine-tuned from
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(spec.name)
    bases = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'confirm-base'")
    assert sorted(int(r.data.tags["seed"]) for r in bases) == sorted(seeds)
    assert all(r.info.status == "FINISHED" and "val_acc" in r.data.metrics for r in bases)
    runs = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'confirm'")
    on_search_base = [r for r in runs if "rethink.base_run" not in r.data.tags]  # the bases = 0 pass
    on_others = [r for r in runs if "rethink.base_run" in r.data.tags]
    assert len(on_search_base) == len(on_others) == 3 * 2  # 3 candidates × 2 seeds, each pass
    assert {int(r.data.tags["base_seed"]) for r in on_search_base} == {spec.seed}
    assert {r.data.tags["rethink.base_run"] for r in on_others} == {r.info.run_id for r in bases}
    assert {int(r.data.tags["base_seed"]) for r in on_others} == set(seeds)
    search.tree.end(search.root)  # what the report stage does once it is written
    assert_stores_agree(f"sqlite:///{tmp_path / 'optuna.db'}", spec.name)


def test_the_mean_over_bases_weighs_each_base_once():
    # two runs on base 7, one on base 9: each base counts once, not each run
    c = Candidate(1, "searched", {}, (0.90, 0.92, 0.80), (7, 7, 9))
    assert c.mean == pytest.approx((0.91 + 0.80) / 2)
    plain = Candidate(2, "searched", {}, (0.90, 0.92, 0.80))  # no base inherited: the mean over runs
    assert plain.mean == pytest.approx(0.8733, abs=1e-4)
    lucky = Candidate(3, "searched", {}, (0.99, 0.90, 0.90), (0, 5, 6))
    steady = Candidate(4, "searched", {}, (0.96, 0.95, 0.95), (0, 5, 6))
    assert best_candidate([lucky, steady]) is steady


@pytest.mark.parametrize(
    ("epochs", "tuned", "own_b", "expected"),
    [
        (140, False, 134, 134),  # the paper's Scratch-B: the whole budget, the seed's whole budget
        (70, True, 134, 67),  # a tuned pick keeps its half of the budget
        (70, True, 150, 75),  # and may grow when the seed's pruned model is cheaper
        (8, False, 134, 8),  # a fixed-epoch baseline (literature at E) keeps its epochs
        (139, True, 134, 133),  # never above the seed's cap
        (140, True, 140, 140),  # the same budget: unchanged
    ],
)
def test_a_scratch_b_run_follows_its_own_seeds_budget(epochs, tuned, own_b, expected):
    search, own = Budgets(8, 140, 8.0, 140.0), Budgets(8, own_b, 8.0, 140.0)
    assert seed_epochs(epochs, "B", search, own, tuned) == expected
    assert seed_epochs(epochs, "E", search, own, tuned) == epochs  # E does not depend on the pruned FLOPs
    assert seed_epochs(epochs + 8, "P", search, own, tuned) <= own.epochs("P")


SLIMMING = [
    "prune.method=slimming",
    "prune.ratio=0.7",
    "prune.min_channels=1",
    "base.sparsity=0.001",
    "model=vgg11",
    'study.arms=["finetune", "scratch-b"]',
    "study.mode=capped",
    'space.epochs={ of = "cap", low = 0.1 }',
    "study.n_trials=1",
    "select.seeds=0",
    'verdict.primary="1@B"',
    'verdict.budgets=["B"]',
    "final.seeds=3",
]


def test_slimming_final_scratch_b_runs_are_each_within_their_own_seeds_budget(tracking_uri, tmp_path):
    spec = load_spec(TINY, SLIMMING)
    out = tmp_path / "reports"
    assert main([*_args(SLIMMING, tmp_path), "--report-dir", str(out)]) == 0
    verdict = json.loads((out / spec.name / "verdict.json").read_text())
    budgets = {(r["arm"], r["pick"]): r for r in verdict["final_budgets"]}
    rows = [r for (arm, _), r in budgets.items() if arm == "scratch-b"]
    assert rows and all(r["within its seed's budget"] == "yes" for r in rows)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(spec.name)
    finals = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final' and tags.arm = 'scratch-b'")
    assert finals
    caps = set()
    for r in finals:
        cap = int(r.data.params["budget_epochs"])  # B of this seed's own pruned model, in epochs
        caps.add(cap)
        assert int(r.data.params["train.epochs"]) <= cap
        macs = r.data.metrics["train_flops"]
        base = client.get_run(r.data.tags["rethink.base_run"]).data.metrics["train_flops"]
        assert macs <= base * 1.0001  # within B: the base's own training, seed by seed
    paper = [r for r in finals if r.data.tags["choice"] == "paper"]
    assert {int(r.data.params["train.epochs"]) for r in paper} == {int(r.data.params["budget_epochs"]) for r in paper}
    assert len(caps) > 1  # the seeds' pruned models differ, and so do their budgets
    report = (out / spec.name / "report.md").read_text()
    assert "Budgets in the final evaluation, seed by seed" in report and "budgets per final seed" in report
    assert "From validation to test" in report
    assert_stores_agree(f"sqlite:///{tmp_path / 'optuna.db'}", spec.name)


@pytest.mark.parametrize("method", ["l1-norm", "slimming"])
def test_a_base_pruned_in_memory_equals_the_same_base_saved_and_loaded(method, tmp_path):
    """The final evaluation prunes its bases in memory, the search and the confirmation from checkpoints:
    weights, BN statistics and kept channels must be the same either way."""
    from rethink.checkpoint import load_cached
    from rethink.prune import prune

    spec = load_spec(TINY, [f"prune.method={method}", "prune.ratio=0.5", "prune.min_channels=1"])
    ds, split = load_data(spec)
    arch = base_arch(spec, ds)
    seed_everything(3)
    model = build_model(arch)
    train(model, split, replace(spec.base.train_config(3), epochs=1), [], Runtime())
    model.cpu().eval()
    save_checkpoint(tmp_path / "model.pt", model, arch, meta={"digest": "d"})
    loaded, _ = load_cached(tmp_path / "model.pt", "d")
    loaded.cpu().eval()
    from study.search.trunk import prune_config

    a, b = prune(model, arch, prune_config(spec)), prune(loaded, arch, prune_config(spec))
    assert a.spec.widths == b.spec.widths and a.keep == b.keep
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and any("running_var" in k for k in sa)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_chance_is_a_one_sided_binomial_test_against_one_over_the_classes():
    from study.search.chance import chance_problem

    assert chance_problem(0.114, 500, 10) is not None  # 57 of 500: p = 0.18 against 10%
    assert "57 of 500" in chance_problem(0.114, 500, 10)
    assert chance_problem(0.16, 500, 10) is None  # 80 of 500: p < 1e-5
    assert chance_problem(0.55, 100, 2) is not None and chance_problem(0.70, 100, 2) is None


def test_a_base_at_chance_stops_the_study_before_any_arm_in_one_line(tracking_uri, tmp_path, capsys):
    """A base trained at a vanishing lr stays at chance: the study stops before any trial, naming the
    accuracy, chance and how to go on; nothing is left RUNNING."""
    args = [*_args(["base.lr=1e-7", "base.epochs=1", "study.baselines=[]"], tmp_path), "--no-report"]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress lines
    assert len(err) == 1 and "not clearly above chance (10.0% for 10 classes" in err[0]
    assert "--allow-chance-base" in err[0] and "base.epochs" in err[0]
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert not [r for r in runs if r.data.tags.get("rethink.kind") in ("trial", "arm")]  # no arm began
