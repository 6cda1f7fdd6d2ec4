"""The proxy search (issue 38, point 4): searched trials on a class subset at a lower resolution and a share
of the epochs, stopped early by successive halving at the same share of their schedules; picks confirmed at
full scale; the proxy's rank correlation with full scale (Kendall's tau) in the report."""

import json
import math

import numpy as np
import optuna
import pytest

from conftest import TINY, assert_stores_agree
from rethink.data import load_dataset
from rethink.proxy import proxy_classes, proxy_split
from rethink.splits import normalized, train_val_split
from study.commands.cli import main
from study.final.confirm import Candidate, Confirmation
from study.plan.load import load_spec
from study.plan.spec import SpecError
from study.verdict.proxy import proxy_correlation

PROXY = ["--set", "study.mode=capped", "--set", 'space.epochs={ of = "cap", low = 0.2 }']
PROXY += [
    "--set",
    "proxy={ classes = 5, resolution = 6, epochs = 0.5 }",
    "--set",
    "select.seeds=1",
    "--set",
    "select.bases=0",
]
# two arms judged at E: the proxy's path under test, not every arm's
PROXY += [
    "--set",
    'study.arms=["finetune", "scratch-e"]',
    "--set",
    'verdict.budgets=["E"]',
    "--set",
    'verdict.primary="1@E"',
]


def test_the_proxy_split_keeps_a_seeded_class_subset_at_the_lower_resolution():
    ds = load_dataset("digits")
    split = normalized(train_val_split(ds, 0.2, 0), "split", ds.name)
    proxy = proxy_split(split, 4, 6, seed=7)
    kept = proxy_classes(split, 4, 7)
    assert len(kept) == 4 and np.array_equal(kept, proxy_classes(split, 4, 7))  # seeded: the same every time
    assert set(np.unique(proxy.y_train)) == set(kept) == set(np.unique(proxy.y_eval))
    assert proxy.x_train.shape[1:] == (1, 6, 6) and proxy.x_train.dtype == np.uint8
    assert len(proxy.y_train) == np.isin(split.y_train, kept).sum()
    same = proxy_split(split, None, 16, seed=7)  # never enlarged
    assert same.x_train.shape == split.x_train.shape


def _conf(pairs, study="s"):
    cands = tuple(
        Candidate(k, "searched", {}, (full,), proxy_acc=proxy) for k, (proxy, full) in enumerate(pairs)
    )  # fmt: skip
    return Confirmation("scratch-e", "best@E", study, cands, 0)


def test_kendall_tau_counts_pairs_within_studies_only():
    agree = [_conf([(0.1, 0.5), (0.2, 0.6), (0.3, 0.7)], "a"), _conf([(0.9, 0.1), (0.8, 0.05)], "b")]
    r = proxy_correlation(agree)
    assert (r["kendall_tau"], r["pairs"], r["studies"], r["candidates"]) == (1.0, 4, 2, 5)
    assert r["ci_low"] == r["ci_high"] == 1.0  # every resample agrees (ties count in neither side)
    # across studies the proxy would look wrong (b: higher proxy, lower full score): within, it is right
    reverse = proxy_correlation([_conf([(0.1, 0.7), (0.2, 0.6), (0.3, 0.5), (0.4, 0.4)])])
    assert reverse["kendall_tau"] == -1.0 and reverse["ci_high"] <= 0
    assert proxy_correlation([_conf([(math.nan, 0.5), (math.nan, 0.6)])]) is None  # no proxy: no check


def test_a_proxy_needs_confirmation_and_a_single_objective():
    with pytest.raises(SpecError, match="select.top_k >= 2"):
        load_spec(
            TINY, ["study.mode='capped'", "space.epochs={of='cap', low=0.2}", "proxy={epochs=0.5}", "select.top_k=1"]
        )
    with pytest.raises(SpecError, match="pareto mode"):
        load_spec(TINY, ["proxy={epochs=0.5}"])


def test_a_proxy_study_prunes_early_confirms_at_full_scale_and_reports_the_rank_check(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    argv = ["study", TINY, *PROXY, "--storage", storage, "--workdir", str(tmp_path / "runs")]
    assert main([*argv, "--report-dir", str(tmp_path / "reports")]) == 0
    spec = load_spec(TINY, [a for a in PROXY if a != "--set"])
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.trials:
            assert t.state.name in ("COMPLETE", "PRUNED")
            steps = sorted(t.intermediate_values)
            epochs = max(1, round(t.params["epochs"] * 0.5))  # the proxy trains half of each trial's epochs
            assert steps and steps[-1] <= 100 and (t.state.name == "PRUNED" or steps[-1] == 100)
            assert len(steps) <= epochs  # one report per proxy epoch, at its percent of the schedule
    verdict = json.loads((tmp_path / "reports" / "tiny" / "verdict.json").read_text())
    assert verdict["proxy"]["classes"] == 5 and verdict["proxy"]["resolution"] == 6
    corr = verdict["proxy"]["correlation"]
    assert corr["candidates"] >= 4 and -1 <= corr["kendall_tau"] <= 1
    rows = verdict["confirmation"]
    assert rows and all("proxy val acc" in r for r in rows)
    for r in rows:  # full-scale confirmation only: one seed each, the proxy score kept apart
        accs = [float(a) for a in r["val acc per seed (search, then confirmation)"].split(", ")]
        assert len(accs) == spec.select.seeds and r["mean"] == pytest.approx(np.mean(accs), abs=1e-4)
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny").experiment_id
    trial_runs = client.search_runs([exp], "tags.`rethink.kind` = 'trial'")
    confirm_runs = client.search_runs([exp], "tags.`rethink.kind` = 'confirm'")
    assert trial_runs and confirm_runs
    for run in trial_runs:  # the proxy trains half the epochs the trial searched
        searched = int(run.data.params["epochs"])
        assert int(run.data.params["train.epochs"]) == max(1, round(searched * 0.5))
    for run in confirm_runs:  # confirmation trains the trial's own epochs, on the full split
        study = optuna.load_study(study_name=run.data.tags["optuna.study_name"], storage=storage)
        searched = study.trials[int(run.data.tags["optuna.trial_number"])].params["epochs"]
        assert int(run.data.params["train.epochs"]) == searched
    report = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert "Proxy check: Kendall's tau" in report
    assert_stores_agree(storage, "tiny")
