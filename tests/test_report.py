"""The verdict: final evaluation with seeds, statistics checked against scipy, figures, artifacts."""

import json

import mlflow
import numpy as np
import pytest
from scipy import stats

from conftest import TINY
from study.cli import main
from study.report import noninferiority_verdict, welch


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.01, 3), rng.normal(0.88, 0.02, 4)
    ours = welch(list(a), list(b))
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert ours["diff"] == pytest.approx(a.mean() - b.mean())
    assert ours["p_value"] == pytest.approx(ref.pvalue)
    assert (ours["ci_low"], ours["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))


@pytest.mark.parametrize(
    "low, high, expect", [(-0.001, 0.02, "supported"), (-0.05, -0.01, "contradicted"), (-0.03, 0.02, "inconclusive")]
)
def test_verdict_is_never_stronger_than_the_interval(low, high, expect):
    test = {"ci_low": low, "ci_high": high, "n_a": 3, "n_b": 3}
    assert noninferiority_verdict(test, margin=0.005).startswith(expect)


@pytest.fixture
def reported(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [
        "--storage",
        storage,
        "--workdir",
        str(tmp_path / "runs"),
        "--set",
        "study.n_trials=3",
        "--set",
        "final.seeds=2",
    ]
    assert main(["study", TINY, *args, "--report-dir", str(tmp_path / "reports")]) == 0
    return tmp_path / "reports" / "tiny", args


def test_report_table_statistics_figures_and_artifacts(reported):
    out, _ = reported
    verdict = json.loads((out / "verdict.json").read_text())
    rows = verdict["table"]
    arms = {(r["arm"], r["choice"]) for r in rows}
    assert {
        ("unpruned", "paper"),
        ("finetune", "best"),
        ("finetune", "paper"),
        ("scratch-b", "best"),
        ("scratch-b", "paper"),
        ("scratch-b", "literature"),
    } <= arms
    assert all(r["seeds"] == 2 for r in rows)

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    finals = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final'")
    by_digest = {r.data.tags["rethink.digest"]: r for r in finals}

    def accs(arm, choice):
        digests = {
            r.data.tags["rethink.digest"]
            for r in finals
            if r.data.tags["arm"] == arm and r.data.tags["choice"] == choice
        }
        return [by_digest[d].data.metrics["test_acc"] for d in digests]

    for r in rows:
        values = accs(r["arm"], r["choice"]) or None
        if values:  # a config also chosen under another name shares that name's runs
            assert r["test_acc"].startswith(f"{100 * np.mean(values):.2f} ± {100 * np.std(values, ddof=1):.2f}")
    for gap in verdict["tuning_gaps"]:
        tuned = [r for r in rows if r["arm"] == gap["arm"] and r["choice"] == "best"][0]
        base = [r for r in rows if r["arm"] == gap["arm"] and r["choice"] == gap["baseline"]][0]
        assert gap["diff"] == pytest.approx(
            (float(tuned["test_acc"].split()[0]) - float(base["test_acc"].split()[0])) / 100, abs=1e-4
        )
    claim1 = [c for c in verdict["claims"] if c["claim"].startswith("1:")]
    assert claim1 and claim1[0]["verdict"].split()[0] in ("supported", "contradicted", "inconclusive")

    for png in ("pareto.png", "best_so_far.png", "val_curves.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    (report_run,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'report'")
    names = {a.path for a in client.list_artifacts(report_run.info.run_id)}
    assert {"verdict.json", "report.md", "table.csv", "pareto.png", "val_curves.png"} <= names
    assert "Verdicts" in (out / "report.md").read_text()


def test_unfinished_studies_are_named_and_can_be_reported_partially(reported, tmp_path, capsys):
    _, args = reported
    short = [a if a != "study.n_trials=3" else "study.n_trials=5" for a in args]
    assert main(["report", TINY, *short, "--out", str(tmp_path / "partial")]) == 2
    err = capsys.readouterr().err
    assert "arm finetune: 3/5 trials, 2 short" in err and "arm scratch-b: 3/5 trials, 2 short" in err
    assert main(["report", TINY, *short, "--out", str(tmp_path / "partial"), "--partial"]) == 0
    assert "caveat**: arm finetune: 3/5 trials" in (tmp_path / "partial" / "tiny" / "report.md").read_text()
