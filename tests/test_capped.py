"""Capped mode (the default): one study per arm and budget, epochs searched up to each budget's cap, a
space that must reach the budgets it is judged at, picks confirmed on more seeds, seed streams apart."""

import json
import math

import mlflow
import optuna
import pytest
from optuna.distributions import IntDistribution

from conftest import TINY, assert_stores_agree
from rethink.arms import confirm_seeds, final_seeds, scratch_init_seed
from study.final.confirm import Candidate, best_candidate
from study.plan.layout import Budgets, epoch_range, reach_problems, study_arms
from study.plan.load import load_spec
from study.plan.spec import SPECS_DIR, SpecError

CAPPED = ["--set", "study.mode=capped", "--set", 'space.epochs={ of = "cap", low = 0.2 }']
STUDIES = ("finetune@E", "scratch-e@E", "scratch-b@B", "scratch-b@P")


def _budgets(e: int, b: int) -> Budgets:
    return Budgets(e, b, 1.0 * e, 1.0 * b)  # train_e per epoch 1: the MACs follow the epochs


@pytest.mark.parametrize("path", sorted(SPECS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_spec_loads_capped_and_reaches_every_budget(path):
    spec = load_spec(str(path))
    assert spec.study.mode == "capped"
    caps = _budgets(spec.base.epochs, 3 * spec.base.epochs)  # any B the pruned model may give
    keys = study_arms(spec)
    expected = {"scratch-e@E", "scratch-b@B"} | ({"scratch-b@P"} if "P" in spec.verdict.budgets else set())
    expected |= {"finetune@E"} if "finetune" in spec.study.arms else set()  # Section 5's specs train no fine-tune
    expected |= {
        f"{a}@{b}" for a in ("uniform", "guided", "transferred") if a in spec.study.arms for b in spec.verdict.budgets
    }
    assert expected <= set(keys)
    for key in keys:
        low, high, log = epoch_range(spec, key, caps)
        assert high == caps.epochs(key.partition("@")[2]) and low <= high and not log  # uniform, up to the cap
    assert reach_problems(spec, caps) == []


def test_an_epoch_range_below_a_budget_is_refused_on_load_naming_the_epochs_needed():
    # E = 10 epochs, known on load; every capped study at E needs its range to reach 10
    with pytest.raises(SpecError, match=r"space\.epochs\.high = 8 cannot reach budget E \(10 epochs .*>= 10"):
        load_spec("quick", ["base.epochs=10", "space.epochs={ low = 2, high = 8 }"])
    spec = load_spec("quick", ["base.epochs=10", "space.epochs={ low = 2, high = 40 }"])  # B and P: at the trunk
    problems = reach_problems(spec, _budgets(10, 38))  # B = 38, P = 48 epochs of the pruned model
    assert any("cannot reach budget P (48 epochs" in p and ">= 48" in p for p in problems)
    assert not any("budget B" in p for p in problems)  # 40 reaches B = 38
    assert epoch_range(spec, "scratch-b@B", _budgets(10, 38)) == (2, 38, False)  # clipped to the cap


def test_the_low_offered_for_a_baseline_below_the_range_admits_it_when_taken():
    """ThiNet-Tiny: B = 1,385 epochs, so the literature baseline's E = 90 lies below 1/8 of the scratch-b@B cap;
    the space.epochs.low the message offers (rounded down, not to the nearest) admits it when taken."""
    import re

    name, caps = "imagenet-thinet-vgg16-tiny", _budgets(90, 1385)
    spec = load_spec(name, ['space.epochs={ of = "cap", low = 0.125 }'])
    (problem,) = [p for p in reach_problems(spec, caps) if "'literature'" in p]
    low = float(re.search(r"space\.epochs\.low <= ([0-9.]+) \(of the cap\)", problem).group(1))
    assert 0 < low <= 90 / 1385
    spec = load_spec(name, [f'space.epochs={{ of = "cap", low = {low} }}'])
    assert not [p for p in reach_problems(spec, caps) if "'literature'" in p]


def test_a_pareto_range_that_stops_short_of_b_is_refused_before_any_trial(tracking_uri, tmp_path, capsys):
    """tiny (pareto): B = 10 and P = 13 epochs of its pruned model, known once it is pruned; the refusal
    comes then, one line, before any trial trains."""
    from study.commands.cli import main

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = ["study", TINY, "--storage", storage, "--workdir", str(tmp_path / "runs"), "--no-report"]
    assert main([*args, "--set", "space.epochs={ low = 1, high = 12 }"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "space.epochs.high = 12 cannot reach budget P (13 epochs" in err and ">= 13" in err
    for s in optuna.get_all_study_summaries(storage):
        assert s.n_trials == 0  # nothing trained past the trunk
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    assert not client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["space.lr={ low = 0.001, high = 0.3 }"],
            r"baseline 'paper' of study quick\.finetune@E: lr 0\.0005 lies "
            r"outside space\.lr \[0\.001, 0\.3\]; set space\.lr\.low <= 0\.0005",
        ),
        (["space.lr={ low = 0.0005, high = 0.04 }"], r"baseline 'rewind' .*lr 0\.05 .*set space\.lr\.high >= 0\.05"),
        (["space.weight_decay={ low = 0.001, high = 0.01 }"], r"weight_decay 0\.0001 lies outside"),
        (
            ["baselines.literature.epochs=11"],
            r"baseline 'literature' of study quick\.scratch-e@E: 11 epochs lie "
            r"outside the study's epochs \[1, 10\]",
        ),
        (
            ['space.epochs={ of = "cap", low = 0.5 }'],
            r"baseline 'paper' of study quick\.finetune@E: 2 epochs "
            r"lie outside the study's epochs \[5, 10\]; set space\.epochs\.low <= 0\.2",
        ),
    ],
    ids=["lr-low", "lr-high", "weight-decay", "epochs-above-cap", "epochs-below-range"],
)
def test_a_numeric_baseline_outside_its_studys_space_is_refused(overrides, message):
    with pytest.raises(SpecError, match=message):
        load_spec("quick", ["base.epochs=10", *overrides])  # E = 10: the fine-tune paper recipe runs 2 epochs


def test_capped_studies_have_one_objective_and_no_hpo_pruner():
    from study.search.studies import make_hpo_pruner

    spec = load_spec("quick", ["study.hpo_pruner='hyperband'"])
    assert isinstance(make_hpo_pruner(spec, 10), optuna.pruners.NopPruner)  # long runs are not stopped for being long
    fixed = load_spec(TINY, ["study.mode='fixed-budget'", "study.hpo_pruner='hyperband'"])
    assert isinstance(make_hpo_pruner(fixed, 10), optuna.pruners.HyperbandPruner)


def test_a_fraction_of_the_cap_needs_capped_mode():
    with pytest.raises(SpecError, match=r"space\.epochs: a fraction of the cap needs study\.mode = 'capped'"):
        load_spec(TINY, ['space.epochs={ of = "cap", low = 0.2 }'])


def test_confirmation_picks_the_best_mean_not_the_best_single_trial():
    lucky = Candidate(3, "searched", {"lr": 0.1}, (0.99, 0.90, 0.91))  # best search score, mean 0.9333
    steady = Candidate(5, "searched", {"lr": 0.02}, (0.97, 0.96, 0.97))  # mean 0.9667
    diverged = Candidate(7, "searched", {"lr": 0.3}, (0.98, math.nan, 0.99))
    assert best_candidate([lucky, steady, diverged]) is steady
    tie = Candidate(9, "baseline:paper", {}, (0.97, 0.97, 0.96))  # the same mean as `steady`, ranked after it
    assert best_candidate([steady, tie]) is steady and best_candidate([tie, steady]) is tie


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_final_seeds_never_repeat_a_search_or_confirmation_seed(seed):
    search = {seed}
    confirm = set(confirm_seeds(seed, 10))
    final = set(final_seeds(seed, 10))
    streams = [search, confirm, final]
    inits = [{scratch_init_seed(s) for s in stream} for stream in streams]  # the scratch inits they derive
    every = [*streams, *inits]
    assert sum(len(s) for s in every) == len(set().union(*every))  # all distinct: no stream repeats another


@pytest.fixture
def capped(run_once, tracking_uri, tmp_path):
    """The tiny spec in capped mode, studied and reported once per session; a copy in this test's folder."""

    def args(folder):
        storage = f"sqlite:///{folder / 'optuna.db'}"
        return ["study", TINY, *CAPPED, "--storage", storage, "--workdir", str(folder / "runs")] + [
            "--report-dir",
            str(folder / "reports"),
        ]

    run_once("tiny-capped", args, tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    report = ["report", TINY, *CAPPED, "--storage", storage, "--workdir", str(tmp_path / "runs")]
    return storage, tmp_path / "reports" / "tiny", [*report, "--out", str(tmp_path / "reports")]


def test_capped_studies_search_each_budget_up_to_its_cap_and_picks_fit_it(capped):
    storage, out, _ = capped
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {f"tiny.{k}" for k in STUDIES}
    caps = {"finetune@E": 3, "scratch-e@E": 3, "scratch-b@B": 10, "scratch-b@P": 13}  # tiny: E 3, B 10
    for key, cap in caps.items():
        study = optuna.load_study(study_name=f"tiny.{key}", storage=storage)
        assert study.metric_names == ["val_acc"] and len(study.directions) == 1  # one objective
        assert all(t.state.name == "COMPLETE" for t in study.trials)  # none stopped early: no hpo pruner
        searched = [t for t in study.trials if not t.user_attrs.get("baseline")]
        assert len(searched) == 2  # tiny: n_trials = 2, the same in every study
        for t in searched:
            low = max(1, math.ceil(0.2 * cap))
            assert t.distributions["epochs"] == IntDistribution(low, cap, log=False)  # uniform up to the cap
        for t in study.trials:
            assert t.params["epochs"] <= cap
    verdict = json.loads((out / "verdict.json").read_text())
    picks = verdict["picks"]
    assert {(p["arm"], p["pick"]) for p in picks if p["pick"].startswith("best")} == {
        ("finetune", "best@E"),
        ("scratch-e", "best@E"),
        ("scratch-b", "best@B"),
        ("scratch-b", "best@P"),
    }
    assert all(p["within"] == "yes" for p in picks) and all(p["is"] in ("searched", "baseline") for p in picks)
    # Scratch-B's baselines stand once under their row (from scratch-b@B), not again from scratch-b@P
    assert sorted(p["pick"] for p in picks if p["arm"] == "scratch-b") == ["best@B", "best@P", "literature", "paper"]
    epochs = {r["study"]: r for r in verdict["searched_epochs"]}
    assert epochs["tiny.scratch-b@P"]["range"] == "3-13" and epochs["tiny.scratch-b@P"]["max epochs"] <= 13
    report = (out / "report.md").read_text()
    assert "Epochs each study searched" in report and "final_train_flops" in report


def test_confirmation_runs_are_mlflow_runs_under_their_arms_and_decide_the_picks(capped, capsys):
    storage, out, args = capped
    verdict = json.loads((out / "verdict.json").read_text())
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    confirm = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'confirm'")
    arms = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'arm'")}
    assert confirm and all(r.info.status == "FINISHED" for r in confirm)
    for r in confirm:
        arm_run = arms[r.data.tags["mlflow.parentRunId"]]  # under the arm run of the study it confirms
        assert arm_run.data.tags["optuna.study_name"] == r.data.tags["optuna.study_name"]
        assert int(r.data.params["train.seed"]) in confirm_seeds(0, 1)
        assert r.data.tags["rethink.trial_kind"] == "confirmation" and "val_acc" in r.data.metrics
    rows = verdict["confirmation"]
    for pick in {(r["arm"], r["pick"]) for r in rows}:
        cands = [r for r in rows if (r["arm"], r["pick"]) == pick]
        assert len(cands) == 2  # tiny: top_k = 2
        chosen = max(cands, key=lambda r: r["mean"])
        assert chosen["chosen"] == "yes"
        for c in cands:
            accs = [float(a) for a in c["val acc per seed (search, then confirmation)"].split(", ")]
            assert len(accs) == 2 and c["mean"] == pytest.approx(sum(accs) / 2, abs=1e-4)
        (row,) = [p for p in verdict["picks"] if (p["arm"], p["pick"]) == pick]
        assert row["trial"] == chosen["trial"]  # the final evaluation trained the confirmed pick
    assert verdict["confirmation_cost"]["runs"] == len({r.data.tags["rethink.digest"] for r in confirm})
    assert_stores_agree(storage, "tiny")  # nothing RUNNING
    # Reporting again finds every confirmation run: none trains twice
    from study.commands.cli import main

    assert main(args) == 0
    again = json.loads((out / "verdict.json").read_text())
    assert again["confirmation_cost"]["trained"] == 0 and again["confirmation"] == rows
    assert len(client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'confirm'")) == len(confirm)


def _liu_row(path, n_test: int | None = None):
    """Liu et al. 2019's L1-norm ResNet-56-A row as five synthetic seeds per arm with the row's mean ± std."""
    z = [k / 1.5811388300841898 for k in (-2, -1, 0, 1, 2)]  # mean 0, sample std 1
    row = {
        ("unpruned", "paper"): (93.14, 0.12),
        ("finetune", "best@E"): (92.97, 0.17),
        ("scratch-e", "best@E"): (92.96, 0.26),
        ("scratch-b", "best@B"): (93.09, 0.14),
    }
    lines = ["arm,pick,seed,test_acc,n_test"]
    lines += [f"{a},{p},{s},{m + sd * z[s]:.6f},{n_test or ''}" for (a, p), (m, sd) in row.items() for s in range(5)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rethink_verdict_on_a_hand_made_table_of_published_numbers(tmp_path, capsys):
    from scipy import stats

    from study.commands.cli import main

    table = _liu_row(tmp_path / "liu-resnet56-a.csv")
    assert main(["verdict", str(table)]) == 0
    out = capsys.readouterr().out
    verdict = json.loads((tmp_path / "liu-resnet56-a.verdict.json").read_text())
    assert "test_acc read as percent" in out and verdict["header"]["mode"] == "capped"
    primary = next(c for c in verdict["claims"] if c.get("role") == "primary")
    b = [93.09 + 0.14 * k / 1.5811388300841898 for k in (-2, -1, 0, 1, 2)]
    ft = [92.97 + 0.17 * k / 1.5811388300841898 for k in (-2, -1, 0, 1, 2)]
    ref = stats.ttest_ind(b, ft, equal_var=False)
    low = ref.confidence_interval(0.95).low / 100  # the one-sided 97.5% bound: a two-sided 95% interval's end
    assert primary["diff"] == pytest.approx(0.0012, abs=1e-6) and primary["ci_low"] == pytest.approx(low, abs=1e-6)
    assert primary["verdict"] == "supported"  # the lower bound (-0.11 pp) clears -0.5 pp
    # With CIFAR-10's 10,000 test images, one run's binomial spread (0.26 pp at 93%) is above the row's stds:
    # the floor widens every interval, and the verdict stays
    floored = _liu_row(tmp_path / "liu-n.csv", n_test=10000)
    assert main(["verdict", str(floored)]) == 0
    wide = next(
        c for c in json.loads((tmp_path / "liu-n.verdict.json").read_text())["claims"] if c.get("role") == "primary"
    )
    assert wide["ci_low"] < primary["ci_low"] and wide["verdict"] == "supported"
    claim3 = next(c for c in verdict["claims"] if c["claim"].startswith("3"))
    assert claim3["verdict"].startswith("missing: no final runs for scratch literature (SL), fine-tune paper (FP)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arm,pick,seed\nfinetune,best@E,0\n", r"missing column 'test_acc'"),
        ("arm,pick,seed,test_acc\nfinetune,best@E,0,abc\n", r"row 2: test_acc 'abc' is not a number"),
        ("arm,pick,seed,test_acc\nfinetune,best@E,0,0.9\nfinetune,best@E,1,0.91\n", r"no rows for scratch-b:best@B"),
        (
            "arm,pick,seed,test_acc\nfinetune,best@E,0,0.9\nfinetune,best@E,0,0.91\n",
            r"row 3: finetune:best@E seed 0 appears twice",
        ),
        ("arm,pick,seed,test_acc\nfinetune,best@E,0,0.9,r1\n", r"a row has more fields than the header names"),
    ],
    ids=["missing-column", "not-a-number", "missing-arm", "duplicate", "extra-field"],
)
def test_a_bad_table_is_one_line_naming_what_is_wrong(tmp_path, capsys, text, message):
    import re

    from study.commands.cli import main

    path = tmp_path / "t.csv"
    path.write_text(text)
    assert main(["verdict", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_a_reports_runs_csv_gives_its_verdicts_again(capped, capsys):
    from study.commands.cli import main

    _, out, _ = capped
    report = json.loads((out / "verdict.json").read_text())
    assert main(["verdict", str(out / "runs.csv"), "--json", str(out / "again.json")]) == 0  # tiny: the defaults
    again = json.loads((out / "again.json").read_text())

    def key(claims):
        return [(c["claim"], c["verdict"], c.get("diff"), c.get("ci_low"), c.get("p_holm")) for c in claims]

    assert again["primary"] == report["primary"] and key(again["claims"]) == key(report["claims"])


def test_claim2_protocol_runs_in_the_final_evaluation_on_a_tiny_spec_with_the_lottery_arm(tracking_uri, tmp_path):
    from study.commands.cli import main

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sets = [
        "study.mode=capped",
        'space.epochs={ of = "cap", low = 0.2 }',
        "study.arms=['scratch-e', 'lottery']",
        "study.n_trials=1",
        'verdict.budgets=["E"]',
        'verdict.primary="2"',
        'study.baselines=["paper"]',  # claim 2's runs at the base lr are the paper baseline's
        "select.seeds=0",  # no confirmation: claim 2 runs in the final evaluation
    ]
    argv = ["study", TINY, "--storage", storage, "--workdir", str(tmp_path / "runs"), "--report-dir", str(tmp_path)]
    assert main([*argv, *[x for s in sets for x in ("--set", s)]]) == 0
    verdict = json.loads((tmp_path / "tiny" / "verdict.json").read_text())
    (c2,) = [c for c in verdict["claims"] if c["claim"].startswith("2")]
    assert c2["role"] == "primary" and "small_lr" in c2 and "interaction" in c2
    assert not c2["verdict"].startswith("missing")
    import csv

    client = mlflow.MlflowClient()
    rows = list(csv.DictReader((tmp_path / "tiny" / "runs.csv").open()))
    base_lr = load_spec(TINY).base.lr
    for arm in ("lottery", "scratch-e"):
        for name, lr in (("claim2@lr", base_lr), ("claim2@lr/10", base_lr / 10)):
            ids = [r["run_id"] for r in rows if (r["arm"], r["pick"]) == (arm, name)]
            runs = [client.get_run(i) for i in ids]  # at the base lr, shared with the paper baseline's runs
            assert len(runs) == 2 and all(float(r.data.params["train.lr"]) == pytest.approx(lr) for r in runs)
            assert {int(r.data.params["train.epochs"]) for r in runs} == {3}  # the base recipe: E epochs
            assert all(r.info.status == "FINISHED" and r.data.tags["arm"] == arm for r in runs)
    assert_stores_agree(storage, "tiny")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("workdir", r"--workdir .*/file/runs: cannot be created or written \(Not a directory: .*/file is a file\)"),
        ("report-dir", r"--report-dir .*/file/reports: cannot be created or written"),
        ("sqlite", r"--storage sqlite:///.*/file/optuna\.db: its lock file .* cannot be created"),
        ("journal", r"--storage journal:.*/file/optuna\.log: its lock file .* cannot be created"),
        ("report-out", r"--out .*/file/reports: cannot be created or written"),
    ],
)
def test_a_path_that_cannot_be_written_is_one_line_naming_it_before_anything_trains(
    tracking_uri, tmp_path, capsys, where, message
):
    """Issue 26 (any engine): a working directory, storage path or report folder that cannot be created or
    written is a one-line error naming the path, never a traceback (as root, a file in the way stands for
    every such case: permissions do not stop root)."""
    import re

    from study.commands.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    storage, workdir, reports = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "runs", tmp_path / "reports"
    if where == "workdir":
        workdir = blocker / "runs"
    elif where in ("report-dir", "report-out"):
        reports = blocker / "reports"
    elif where == "sqlite":
        storage = f"sqlite:///{blocker / 'optuna.db'}"
    else:
        storage = f"journal:{blocker / 'optuna.log'}"
    command = "report" if where == "report-out" else "study"
    argv = [command, TINY, "--storage", storage, "--workdir", str(workdir)]
    argv += ["--out", str(reports)] if command == "report" else ["--report-dir", str(reports)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]) and "Traceback" not in err[0], err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("model.pt"))  # nothing trained
