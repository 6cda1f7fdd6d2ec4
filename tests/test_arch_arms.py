"""Section 5's arms in the study: their spec fields, their budgets, the models they build, claim 4, and one
capped study with uniform, guided and transferred arms end to end."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from conftest import TINY, assert_stores_agree
from rethink.arms import ArmError, build_arm, scratch_init_seed
from rethink.flops import training_flops
from rethink.models import build_model, default_spec
from rethink.prune import PruneConfig, prune
from rethink.prune.matched import derive
from rethink.train import TrainConfig
from study.commands.cli import main
from study.final.evaluation import FinalResult
from study.plan.layout import arch_budgets, budgets, epoch_range, study_arms
from study.plan.load import load_spec
from study.plan.spec import SpecError
from study.verdict.architectures import stops_paying
from study.verdict.claim4 import claim4, superiority
from study.verdict.claims import claims
from study.verdict.settings import Analysis

ARCH = ['study.arms=["finetune", "scratch-e", "scratch-b", "uniform", "guided"]', "study.mode=capped"]
CAPPED_SPACE = ['space.epochs={of = "cap", low = 0.1}']


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (['study.arms=["scratch-e", "transferred"]'], "arch.pattern_from"),
        (['arch.pattern_from="quick"'], "arch.pattern_from is set but study.arms has no 'transferred'"),
        (['study.arms=["scratch-e", "uniform"]', "study.mode=fixed-budget"], "study.mode = 'fixed-budget'"),
        (['verdict.primary="4@B"'], "verdict.primary = '4@B' is claim 4"),
        (['study.arms=["uniform"]', "study.mode=capped", *CAPPED_SPACE, "arch.tolerance=0.5"], "arch.tolerance"),
    ],
)
def test_a_bad_architecture_arm_setting_is_refused_naming_the_field(overrides, field):
    with pytest.raises(SpecError, match=field.replace("(", r"\(").replace(")", r"\)")):
        load_spec(TINY, overrides)


def test_a_uniform_arm_that_cannot_match_the_pruned_size_is_refused_before_training(tracking_uri, tmp_path, capsys):
    """On the estimated pruned architecture (slimming's random scales), before anything trains: one line
    naming the field, no run in the tracking store, no file in the workdir."""
    storage, workdir = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs"
    args = ["--set", "prune.method=slimming", "--set", "base.sparsity=0.0001", "--set", "arch.tolerance=0.000001"]
    args += [f"--set={o}" for o in (*ARCH, *CAPPED_SPACE)]
    assert main(["study", TINY, "--storage", storage, "--workdir", str(workdir), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arch.match (uniform arm, on the estimated pruned architecture)" in err[0]
    assert "tolerance 0.0001%" in err[0]
    assert not workdir.exists() and mlflow.MlflowClient().search_experiments(filter_string="name = 'tiny'") == []


def test_capped_mode_studies_each_architecture_arm_at_every_budget_judged():
    spec = load_spec(TINY, [*ARCH, *CAPPED_SPACE, 'verdict.budgets=["E", "B"]', 'verdict.primary="1@B"'])
    keys = study_arms(spec)
    assert [k for k in keys if k.startswith(("uniform", "guided"))] == [
        "uniform@E",
        "uniform@B",
        "guided@E",
        "guided@B",
    ]


def test_an_architecture_arm_has_budgets_of_its_own_size():
    base = TrainConfig(epochs=10)
    pruned = budgets(base, 4_000, 1_000, 100)
    mine = arch_budgets(pruned, base, 4_000, 2_000, 100)  # twice the pruned model's MACs (matched on params)
    assert mine.epochs("E") == 10 and mine.train_e == training_flops(2_000, 10 * 100)
    assert mine.epochs("B") == 20 and mine.train_b == pruned.train_b  # the base's training compute
    assert mine.pipeline_p == pruned.pipeline_p  # fine-tune's pipeline, the same for every arm
    assert mine.epochs("P") == int(pruned.pipeline_p / training_flops(2_000, 100))
    assert mine.within(
        "P", mine.epochs("P") * training_flops(2_000, 100), mine.epochs("P") * training_flops(2_000, 100)
    )
    spec = load_spec(TINY, [*ARCH, *CAPPED_SPACE])
    assert epoch_range(spec, "uniform@B", mine)[1] == 20 and epoch_range(spec, "scratch-b@B", pruned)[1] == 40


@pytest.mark.parametrize("method", ["slimming", "magnitude"])
def test_an_architecture_arm_builds_its_own_architecture_from_a_fresh_init(method):
    spec = default_spec("vgg11", 1, 10, 8, 0.5)
    torch.manual_seed(0)
    base = build_model(spec)
    pruned = prune(base, spec, PruneConfig(method, 0.5))
    derived = derive("uniform", spec, pruned)
    arm = build_arm("uniform", pruned, spec, TrainConfig(epochs=4), 1, seed=7, derived=derived)
    assert arm.forward_macs == derived.macs and not arm.inherits_base and arm.config.epochs == 4
    shapes = {n: p.shape for n, p in build_model(derived.spec).named_parameters()}
    assert {n: p.shape for n, p in arm.model.named_parameters()} == shapes
    torch.manual_seed(scratch_init_seed(7))
    fresh = build_model(derived.spec)
    first = next(n for n, _ in fresh.named_parameters())
    if method == "slimming":  # the scratch init of Scratch-E, never the base's weights
        assert torch.equal(dict(arm.model.named_parameters())[first], dict(fresh.named_parameters())[first])
    else:  # each conv keeps exactly the record's weights, at places of its own (not the magnitude masks)
        (keep,) = arm.callbacks
        for name, k in derived.kept.items():
            assert int(keep.masks[name].sum()) == k
            assert int((dict(arm.model.named_parameters())[name] != 0).sum()) == k
        assert any(not torch.equal(keep.masks[n], pruned.masks[n]) for n in derived.kept)
    with pytest.raises(ArmError, match="needs its architecture"):
        build_arm("guided", pruned, spec, TrainConfig(), 1, seed=7)


def _results(cells: dict[tuple[str, str], list[float]]) -> list[FinalResult]:
    return [
        FinalResult(arm, pick, seed, acc, 1.0, 1.0, 1, {}, f"{arm}-{pick}-{seed}", n_test=10_000)
        for (arm, pick), accs in cells.items()
        for seed, acc in enumerate(accs)
    ]


def test_claim4_is_a_one_sided_superiority_test_paired_by_seed():
    from scipy import stats

    pruned = [0.930, 0.936, 0.928, 0.934, 0.931]
    uniform = [0.921, 0.925, 0.922, 0.924, 0.920]
    test = superiority(dict(enumerate(pruned)), dict(enumerate(uniform)), 0.0, 0.975, None)
    ref = stats.ttest_rel(pruned, uniform, alternative="greater")
    assert test["pairing"] == "by seed" and test["verdict"] == "supported"
    assert test["diff"] == pytest.approx(np.mean(np.subtract(pruned, uniform)))
    assert test["p_superiority"] == pytest.approx(ref.pvalue, rel=1e-6)
    # with the test set's binomial floor on each cell's variance (10,000 images) the test is more careful
    floored = superiority(dict(enumerate(pruned)), dict(enumerate(uniform)), 0.0, 0.975, 10_000)
    assert ref.pvalue < floored["p_superiority"] < 0.025 and floored["verdict"] == "supported"
    reverse = superiority(dict(enumerate(uniform)), dict(enumerate(pruned)), 0.0, 0.975, 10_000)
    assert reverse["verdict"].startswith("contradicted")
    # a margin the difference does not clear: not supported, however small the p against zero
    assert superiority(dict(enumerate(pruned)), dict(enumerate(uniform)), 0.02, 0.975, 10_000)["verdict"] == (
        "inconclusive"
    )


def test_claim4_enters_the_holm_family_and_can_be_the_primary():
    base = [0.93, 0.94, 0.935, 0.938, 0.932]
    cells = {
        ("finetune", "best@E"): base,
        ("scratch-e", "best@E"): base,
        ("scratch-b", "best@B"): [x + 0.01 for x in base],
        ("uniform", "best@E"): [x - 0.01 for x in base],
        ("uniform", "best@B"): [x - 0.001 * (k % 2) for k, x in enumerate(base)],
        ("guided", "best@E"): base,
        ("guided", "best@B"): base,
    }
    analysis = Analysis(0.005, 0.975, ("E", "B"), primary="4@B")
    entries = claims(_results(cells), analysis, "capped")
    ids = {e["comparison_id"]: e for e in entries}
    assert {"4@E", "4@B", "4g@E", "4g@B"} <= set(ids)
    assert ids["4@B"]["role"] == "primary" and "p_holm" not in ids["4@B"]
    assert ids["4@E"]["role"] == "secondary" and ids["4@E"]["holm_family"] == sum(1 for e in entries if "p_holm" in e)
    assert ids["4@E"]["comparison"] == "scratch-e:best@E - uniform:best@E"
    assert claim4(_results({("scratch-b", "best@B"): base}), analysis) == []  # no uniform arm, no claim 4


def test_rethink_verdict_gives_claim4_rows_from_a_per_seed_table(tmp_path):
    rows = ["arm,pick,seed,test_acc,n_test"]
    for arm, pick, shift in (
        ("finetune", "best@E", 0.0),
        ("scratch-e", "best@E", 0.0),
        ("scratch-b", "best@B", 0.01),
        ("uniform", "best@B", 0.0),
        ("uniform", "best@E", 0.0),
    ):
        rows += [f"{arm},{pick},{s},{0.9 + shift + 0.002 * s},10000" for s in range(4)]
    table = tmp_path / "runs.csv"
    table.write_text("\n".join(rows) + "\n")
    assert main(["verdict", str(table), "--budgets", "E,B", "--primary", "4@B"]) == 0
    verdict = json.loads((tmp_path / "runs.verdict.json").read_text())
    primary = next(c for c in verdict["claims"] if c["role"] == "primary")
    assert primary["comparison_id"] == "4@B" and primary["verdict"] == "supported"
    assert primary["diff"] == pytest.approx(0.01)
    # the primary sentence reads claim 4's own margin and meaning, not claim 1's non-inferiority margin
    assert "margin 0.00 pp" in verdict["primary"] and "beats its same-size twin" in verdict["primary"]


def test_where_the_pruned_architecture_stops_paying():
    assert (
        stops_paying([(0.3, "supported"), (0.6, "supported")]) == "the pruned architecture beats uniform at every level"
    )
    text = stops_paying([(0.9, "inconclusive"), (0.3, "supported"), (0.6, "supported")])
    assert "at ratios [0.3, 0.6], not at [0.9]; it first stops paying at ratio 0.9" in text
    assert "at no level" in stops_paying([(0.3, "inconclusive")])


def _source_spec(tmp_path):
    """A spec whose pruned architecture is known without training (L1-norm at 30% of VGG-13): its pattern is
    computed for the transferred arm, as for a shipped L1-norm spec."""
    text = (
        Path(TINY)
        .read_text()
        .replace('name = "tiny"', 'name = "tiny-source"')
        .replace('model = "vgg11"', 'model = "vgg13"')
    )
    path = tmp_path / "tiny-source.toml"
    path.write_text(text.replace("ratio = 0.5", "ratio = 0.3"))
    return path


@pytest.mark.slow
def test_a_capped_study_with_uniform_guided_and_transferred_arms_runs_end_to_end(tracking_uri, tmp_path):
    storage, workdir, reports = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs", tmp_path / "reports"
    overrides = [
        "name=tiny-s5",
        "prune.method=slimming",
        "base.sparsity=0.0001",
        'study.arms=["finetune", "scratch-e", "scratch-b", "uniform", "guided", "transferred"]',
        "study.mode=capped",
        "study.n_trials=1",
        'study.baselines=["paper"]',
        f'arch.pattern_from="{_source_spec(tmp_path)}"',
        'verdict.budgets=["E", "B"]',
        *CAPPED_SPACE,
    ]
    args = ["study", TINY, "--storage", storage, "--workdir", str(workdir), "--report-dir", str(reports)]
    assert main([*args, *(x for o in overrides for x in ("--set", o))]) == 0

    verdict = json.loads((reports / "tiny-s5" / "verdict.json").read_text())
    c4 = {c["comparison_id"]: c for c in verdict["claims"] if c["comparison_id"][:1] == "4"}
    assert set(c4) == {f"4{s}@{b}" for s in ("", "g", "t") for b in ("E", "B")}
    sizes = c4["4@B"]["sizes"]
    for arm in ("uniform", "guided", "transferred"):
        got = verdict["architectures"][arm]
        assert abs(got["params"] / verdict["architectures"]["pruned"]["params"] - 1) <= 0.01
        assert sizes[arm] == got or arm not in sizes
    assert all(c["verdict"] for c in c4.values()) and all("p_holm" in c for c in c4.values() if "diff" in c)
    report = (reports / "tiny-s5" / "report.md").read_text()
    assert "## Architectures (the paper's Section 5)" in report
    assert (reports / "tiny-s5" / "architectures.png").is_file() and (reports / "tiny-s5" / "efficiency.png").is_file()

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny-s5")
    (prune_run,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'prune'")
    artifacts = {f.path for f in client.list_artifacts(prune_run.info.run_id, "architectures")}
    assert artifacts == {f"architectures/{a}.json" for a in ("uniform", "guided", "transferred")}
    record = json.loads(
        Path(client.download_artifacts(prune_run.info.run_id, "architectures/transferred.json")).read_text()
    )
    assert record["pattern"]["source"] == "tiny-source" and prune_run.data.metrics["uniform_params"] > 0
    finals = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final' and tags.arm = 'uniform'")
    assert finals and all("arch_params" in r.data.params for r in finals)
    for r in finals:  # each final seed's uniform architecture is matched to its own pruned model
        assert r.data.metrics["pipeline_flops"] == r.data.metrics["train_flops"]
    uniform_macs = json.loads(
        Path(client.download_artifacts(prune_run.info.run_id, "architectures/uniform.json")).read_text()
    )["macs"]

    def per_image_epoch(arm: str, macs: float) -> set[float]:
        trials = client.search_runs([exp.experiment_id], f"tags.`rethink.kind` = 'trial' and tags.arm LIKE '{arm}@%'")
        assert trials
        return {round(t.data.metrics["train_flops"] / (t.data.metrics["epochs_run"] * macs)) for t in trials}

    # a uniform trial's compute is counted at its own architecture's MACs, a scratch trial's at the pruned
    # model's: per epoch and MAC both come to 3 × the training images
    assert per_image_epoch("uniform", uniform_macs) == per_image_epoch(
        "scratch-e", prune_run.data.metrics["flops_after"]
    )
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert_stores_agree(storage, "tiny-s5", client)


@pytest.mark.slow
def test_pareto_mode_with_stacked_fusion_picks_each_architecture_within_each_budget(tracking_uri, tmp_path):
    """Pareto mode (one study per architecture arm, its picks the best within E and within B) under
    --fuse stacked (same-shape runs of an arm trained as one computation): claim 4 at E and B, every pick
    within its budget on the arm's own account."""
    storage, workdir, reports = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs", tmp_path / "reports"
    overrides = [
        "name=tiny-s5-pareto",
        'study.arms=["finetune", "scratch-e", "scratch-b", "uniform", "guided"]',
        "study.n_trials=2",
        'study.baselines=["paper"]',
        'verdict.budgets=["E", "B"]',
        "prune.method=magnitude",
        "space.epochs={low = 1, high = 16}",
    ]
    args = ["study", TINY, "--storage", storage, "--workdir", str(workdir), "--report-dir", str(reports)]
    assert main([*args, "--fuse", "stacked", *(x for o in overrides for x in ("--set", o))]) == 0
    verdict = json.loads((reports / "tiny-s5-pareto" / "verdict.json").read_text())
    assert {c["comparison_id"] for c in verdict["claims"]} >= {"4@E", "4@B", "4g@E", "4g@B"}
    picks = {(p["arm"], p["pick"]): p for p in verdict["picks"]}
    for arm in ("uniform", "guided"):
        assert picks[(arm, "best@E")]["within"] == "yes" and picks[(arm, "best@B")]["within"] == "yes"
        assert (arm, "paper") in picks  # the paper recipe at E epochs, enqueued as in the scratch study
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny-s5-pareto")
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert_stores_agree(storage, "tiny-s5-pareto", client)
