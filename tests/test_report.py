"""The verdict: final evaluation with seeds, statistics checked against scipy, figures, artifacts."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from scipy import stats

from conftest import TINY, start_mlflow_server, stop_process_group, wait_http
from rethink.arms import derive_seed, final_seeds
from study.commands.cli import main
from study.plan.paper import published
from study.verdict.stats import noninferiority_verdict, welch


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
    "low, high, expect",
    [
        (-0.001, 0.02, "supported"),
        (-0.05, -0.01, "contradicted"),
        (-0.03, 0.02, "inconclusive"),
        (-0.006, -0.001, "inconclusive"),  # below 0 but not below -margin: overlaps the non-inferior region
    ],
)
def test_verdict_is_never_stronger_than_the_interval(low, high, expect):
    test = {"ci_low": low, "ci_high": high, "n_a": 3, "n_b": 3}
    assert noninferiority_verdict(test, margin=0.005).startswith(expect)


def _args(folder):
    storage = f"sqlite:///{folder / 'optuna.db'}"
    return [
        "--storage",
        storage,
        "--workdir",
        str(folder / "runs"),
        "--set",
        "study.n_trials=3",
        "--set",
        "final.seeds=2",
    ]


@pytest.fixture
def reported(run_once, tracking_uri, tmp_path):
    """The tiny spec studied and reported once per session; a copy in this test's folder."""
    run_once("tiny-reported", lambda f: ["study", TINY, *_args(f), "--report-dir", str(f / "reports")], tmp_path)
    return tmp_path / "reports" / "tiny", _args(tmp_path)


def test_report_table_statistics_figures_and_artifacts(reported):
    out, _ = reported
    verdict = json.loads((out / "verdict.json").read_text())
    rows = verdict["table"]
    arms = {(r["arm"], r["choice"]) for r in rows}
    assert {
        ("unpruned", "paper"),
        ("finetune", "best"),
        ("finetune", "best@E"),
        ("finetune", "paper"),
        ("finetune", "rewind"),
        ("scratch-e", "best@E"),
        ("scratch-e", "paper"),
        ("scratch-e", "literature"),
        ("scratch-b", "best@B"),
        ("scratch-b", "paper"),
        ("scratch-b", "literature"),
    } <= arms
    assert all(r["seeds"] == 2 for r in rows)
    assert "untuned" in next(r["recipe"] for r in rows if r["arm"] == "unpruned")
    assert "Renda" in next(r["recipe"] for r in rows if r["choice"] == "rewind")

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
        tuned = [r for r in rows if r["arm"] == gap["arm"] and r["choice"] == gap["tuned"]][0]
        base = [r for r in rows if r["arm"] == gap["arm"] and r["choice"] == gap["baseline"]][0]
        if "note" in gap:  # the tuned pick is this baseline: the same runs, no test of them against themselves
            assert "same runs" in gap["note"] and "p_value" not in gap and tuned["test_acc"] == base["test_acc"]
            continue
        assert gap["diff"] == pytest.approx(
            (float(tuned["test_acc"].split()[0]) - float(base["test_acc"].split()[0])) / 100, abs=1e-4
        )
    claim1 = [c for c in verdict["claims"] if c["claim"].startswith("1 ")]
    assert [c["budget"] for c in claim1] == ["E", "B", "P"]
    (primary,) = [c for c in verdict["claims"] if c["role"] == "primary"]  # the spec's default: claim 1 at B
    assert primary["comparison_id"] == "1@B" and verdict["primary"].startswith("Primary comparison (1@B)")
    assert (out / "report.md").read_text().splitlines()[2] == f"**{verdict['primary']}**"  # before the tables
    assert all("p_holm" in c for c in verdict["claims"] if c["role"] == "secondary" and "same_as" not in c)
    assert all(c["verdict"].split()[0] in ("supported", "contradicted", "inconclusive", "same") for c in claim1)
    assert claim1[0]["verdict"].split()[0] != "same"  # budget E always tests; B and P may repeat its runs
    for c in claim1:  # a repeat names the budget whose runs it repeats, and those runs are the same
        if "same_as" in c:
            (first,) = [d for d in claim1 if d["budget"] == c["same_as"]]
            assert c["diff"] == first["diff"] and c["verdict"].startswith(f"same runs as budget {c['same_as']}")

    (claim3,) = [c for c in verdict["claims"] if c["claim"].startswith("3")]
    assert set(claim3["parts"]) == {"a", "b", "c", "d"} and all("ci_low" in p for p in claim3["parts"].values())
    assert claim3["cells"]["scratch literature (SL)"]["n"] == 2
    assert "pre-registered" in verdict["header"]["analysis"]
    for png in ("pareto.png", "best_so_far.png", "val_curves.png", "lr_sensitivity.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    (report_run,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'report'")
    names = {a.path for a in client.list_artifacts(report_run.info.run_id)}
    assert {"verdict.json", "report.md", "report.html", "table.csv", "pareto.png", "val_curves.png"} <= names
    assert "Verdicts" in (out / "report.md").read_text()
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")  # the report ended them


def _chromium() -> str | None:
    return next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_html_renders_its_table_and_figures_in_headless_chromium(reported, tmp_path):
    """A real browser loads report.html from disk, with no network: every figure decodes (they are embedded),
    every table row is laid out, no table makes the page wider than the window, the console logs no error,
    and the rendered text holds no nan, dict or `trial nan`. The page records what it rendered on load;
    --dump-dom reads it back. A screenshot is kept (in RETHINK_TEST_ARTIFACTS when set) for a person to see."""
    out, _ = reported
    page = out / "report.html"
    assert "http" not in page.read_text().split("<body>")[1].split("data:image")[0]  # nothing to fetch
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2400"]
    run = subprocess.run(
        [*browser, "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = run.stdout
    figures = int(re.search(r'data-figures-decoded="(\d+)"', dom).group(1))
    rows = int(re.search(r'data-table-rows-shown="(\d+)"', dom).group(1))
    overflow = int(re.search(r'data-page-overflow="(\d+)"', dom).group(1))
    table_rows = len(json.loads((out / "verdict.json").read_text())["table"])
    assert figures == len(list(out.glob("*.png"))) == 5  # the verdict figure first, then the four others
    assert rows >= table_rows  # the results table, plus the tuning-gap and importance tables
    assert overflow == 0  # wide tables scroll inside their box; the page itself never does
    assert "Verdicts" in dom and "unpruned" in dom
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line and ("rror" in line or "Uncaught" in line)]
    assert console == []
    text = re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", dom))
    assert not re.search(r"\bnan\b", text, re.IGNORECASE) and "{'" not in text and "trial nan" not in text
    shots = Path(os.environ.get("RETHINK_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report-html.png"
    subprocess.run([*browser, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"report.html screenshot: {shot}")


@pytest.mark.slow  # starts an MLflow server
@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_html_renders_in_mlflows_artifact_view_of_the_spec_run(reported, tmp_path):
    """The spec's root run holds report.html; a real `mlflow server` on 127.0.0.1 serves it (the endpoint
    MLflow's UI reads an artifact from) byte for byte, and the page renders the way that UI's artifact view
    shows HTML (MLflow 3: a text/html Blob in an iframe sandboxed to allow-scripts): every figure decodes,
    the rows are laid out, nothing overflows the frame. The page tells its parent what it rendered."""
    out, _ = reported
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    (root,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'spec'")
    url, proc = start_mlflow_server(mlflow.get_tracking_uri(), tmp_path / "served-artifacts")
    try:
        served = wait_http(f"{url}/get-artifact?path=report.html&run_uuid={root.info.run_id}").decode()
    finally:
        stop_process_group(proc)
    assert served == (out / "report.html").read_text()
    frame = tmp_path / "artifact-view.html"
    script_literal = json.dumps(served).replace("</", "<\\/")  # no </script> ends the frame page's script early
    frame.write_text(
        "<!doctype html><html><body><iframe id=view width=900 height=1800 sandbox=allow-scripts></iframe><script>"
        f"const html={script_literal};"
        'document.getElementById("view").src=URL.createObjectURL(new Blob([html],{type:"text/html"}));'
        'addEventListener("message",e=>{Object.assign(document.body.dataset,e.data.rethinkReport);'
        'document.body.dataset.framed="1";});</script></body></html>'
    )
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,2000"]
    for budget in (10_000, 30_000):  # a cold Chromium on a busy 2-core machine can miss the first budget
        dom = subprocess.run(
            [*browser, f"--virtual-time-budget={budget}", "--dump-dom", frame.as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
        ).stdout
        if 'data-framed="1"' in dom:
            break
    assert 'data-framed="1"' in dom, "the framed report never reported back"
    assert int(re.search(r'data-figures-decoded="(\d+)"', dom).group(1)) == len(list(out.glob("*.png")))
    rows = int(re.search(r'data-table-rows-shown="(\d+)"', dom).group(1))
    assert rows >= len(json.loads((out / "verdict.json").read_text())["table"])
    assert int(re.search(r'data-page-overflow="(\d+)"', dom).group(1)) == 0


def test_finished_final_runs_are_reused_by_a_later_spec_run(reported, tmp_path):
    """Another spec run (here: one more final seed, so another root) trains only what is new: the finished
    final runs of the first two final seeds are found again by digest, wherever they are in the experiment."""
    _, args = reported
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    query = "tags.`rethink.kind` = 'final'"
    before = {r.info.run_id for r in client.search_runs([exp.experiment_id], query)}
    argv = [
        "report",
        TINY,
        *[a if a != "final.seeds=2" else "final.seeds=3" for a in args],
        "--out",
        str(tmp_path / "r3"),
    ]
    assert main(argv) == 0
    new = [r for r in client.search_runs([exp.experiment_id], query) if r.info.run_id not in before]
    assert new and {r.data.tags["seed"] for r in new} == {str(final_seeds(0, 3)[2])}
    verdict = json.loads((tmp_path / "r3" / "tiny" / "verdict.json").read_text())
    assert all(r["seeds"] == 3 for r in verdict["table"])


def test_unfinished_studies_are_named_and_can_be_reported_partially(reported, tmp_path, capsys):
    _, args = reported
    short = [a if a != "study.n_trials=3" else "study.n_trials=5" for a in args]
    assert main(["report", TINY, *short, "--out", str(tmp_path / "partial")]) == 2
    err = capsys.readouterr().err
    assert "arm finetune: 5/7 trials, 2 short" in err and "arm scratch: 6/8 trials, 2 short" in err
    assert main(["report", TINY, *short, "--out", str(tmp_path / "partial"), "--partial"]) == 0
    assert "caveat**: arm finetune: 5/7 trials" in (tmp_path / "partial" / "tiny" / "report.md").read_text()


def test_scratch_rows_are_the_scratch_study_within_each_budget(reported):
    """Pareto mode: one `tiny.scratch` study; the Scratch-E row is its best trial within budget E (train
    FLOPs of E epochs of the pruned model), Scratch-B its best within B (the base's training FLOPs)."""
    out, args = reported
    verdict = json.loads((out / "verdict.json").read_text())
    caps = verdict["header"]["budgets_macs"]
    storage = args[1]
    assert {s.study_name for s in optuna.get_all_study_summaries(storage)} == {"tiny.finetune", "tiny.scratch"}
    trials = optuna.load_study(study_name="tiny.scratch", storage=storage).get_trials(states=(TrialState.COMPLETE,))
    for arm, pick, cap in (("scratch-e", "best@E", caps["E"]), ("scratch-b", "best@B", caps["B"])):
        (row,) = [r for r in verdict["table"] if r["arm"] == arm and r["choice"] == pick]
        chosen = trials[int(row["trial"])]
        assert chosen.user_attrs["train_flops"] <= cap * 1.0001
        within = [t for t in trials if t.user_attrs["train_flops"] <= cap * 1.0001]
        assert chosen.values[0] == max(t.values[0] for t in within)
    assert caps["E"] < caps["B"] < caps["P"]
    paper_b = [t for t in trials if t.user_attrs.get("baseline") == "paper@B"][0]
    assert caps["E"] < paper_b.user_attrs["train_flops"] <= caps["B"] * 1.0001


def test_final_finetune_runs_descend_from_their_seeds_base_trained_on_train_and_val(reported, digits):
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    finals = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final'")
    bases = {r.info.run_id: r for r in finals if r.data.tags.get("rethink.role") == "base"}
    assert sorted(int(b.data.tags["seed"]) for b in bases.values()) == sorted(final_seeds(0, 2))
    for b in bases.values():
        assert b.data.tags["data"] == "train+val" and b.data.tags["arm"] == "unpruned"
        assert int(b.data.params["train_images"]) == len(digits.y_train)  # the whole training set, val included
    finetune = [r for r in finals if r.data.tags["arm"] == "finetune"]
    scratch = [r for r in finals if r.data.tags["arm"].startswith("scratch")]
    assert finetune and scratch
    for r in finals:
        if r.info.run_id in bases:
            continue
        base = bases[r.data.tags["rethink.base_run"]]
        assert base.data.tags["seed"] == r.data.tags["seed"] == r.data.tags["base_seed"]
        assert int(r.data.params["train_images"]) == len(digits.y_train)
        inherited = base.data.metrics["train_flops"] if r in finetune else 0.0
        assert r.data.metrics["pipeline_flops"] == pytest.approx(r.data.metrics["train_flops"] + inherited)


def test_a_margin_chosen_after_the_results_is_labelled_post_hoc(reported, tmp_path):
    _, args = reported
    for extra in (["--margin", "2.0"], ["--set", "verdict.margin=2.0"]):
        out = tmp_path / f"ph{len(extra[0])}"
        assert main(["report", TINY, *args, *extra, "--out", str(out)]) == 0
        verdict = json.loads((out / "tiny" / "verdict.json").read_text())
        assert verdict["header"]["analysis"].startswith("POST HOC")
        assert verdict["claims"] and all(c["verdict"].startswith("post hoc: ") for c in verdict["claims"])
        assert all(c["margin"] == 0.02 for c in verdict["claims"] if "margin" in c)
        assert "POST HOC" in (out / "tiny" / "report.md").read_text()


def _row(row: str) -> str:
    """The name line of a spec plus its paper_row (top-level keys come before any table)."""
    return f'name = "tiny-r0.5"\npaper_row = "{row}"'


@pytest.mark.slow
def test_operating_points_random_control_and_summary(tracking_uri, tmp_path, capsys):
    """prune.ratios runs one setting per level, each with its own studies and report; the trade-off report
    draws them and pools the verdicts; the random-selection control is tuned like any arm; `rethink
    summary` prints one row per finished setting."""
    reports = tmp_path / "reports"
    args = ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--workdir", str(tmp_path / "runs")]
    sets = [
        "prune.ratios=[0.25, 0.5]",
        "study.n_trials=1",
        "study.arms=['finetune', 'finetune-random', 'scratch-e', 'unpruned']",
        "space.epochs={low=1, high=3}",  # reaches E = 3 (no scratch-b here: B and P are not searched)
    ]
    argv = ["study", TINY, *args, *[x for s in sets for x in ("--set", s)], "--report-dir", str(reports)]
    assert main(argv) == 0
    names = {s.study_name for s in optuna.get_all_study_summaries(args[1])}
    studies = ("finetune", "finetune-random", "scratch", "unpruned")
    assert names == {f"tiny-r{r}.{a}" for r in ("0.25", "0.5") for a in studies}
    for level in ("tiny-r0.25", "tiny-r0.5"):
        verdict = json.loads((reports / level / "verdict.json").read_text())
        rows = {(r["arm"], r["choice"]): r for r in verdict["table"]}
        assert {("finetune-random", "best@E"), ("unpruned", "paper"), ("unpruned", "best")} <= set(rows)
        assert "untuned" in rows[("unpruned", "paper")]["recipe"] and "tuned" in rows[("unpruned", "best")]["recipe"]
        assert any(c["claim"].startswith("control: criterion vs random") for c in verdict["claims"])
    client = mlflow.MlflowClient()
    controls = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id], "tags.`rethink.kind` = 'final' and tags.arm = 'finetune-random'")
    ]
    assert controls  # each final seed fine-tunes a selection drawn from its own stream
    assert all(int(r.data.tags["control_seed"]) == derive_seed(int(r.data.tags["seed"]), "random") for r in controls)
    assert len({r.data.tags["control_seed"] for r in controls}) == len({r.data.tags["seed"] for r in controls}) > 1
    reductions = [
        json.loads((reports / lv / "verdict.json").read_text())["header"]["flops_reduction"]
        for lv in ("tiny-r0.25", "tiny-r0.5")
    ]
    assert float(reductions[0].rstrip("%")) < float(reductions[1].rstrip("%"))
    tradeoff = json.loads((reports / "tiny" / "tradeoff.json").read_text())
    assert tradeoff["levels"] == ["tiny-r0.25", "tiny-r0.5"]
    assert {p["setting"] for p in tradeoff["per_level"]} == {"tiny-r0.25", "tiny-r0.5"}
    pooled = {p["claim"]: p for p in tradeoff["pooled"]}
    assert any(k.startswith("1 at budget E") for k in pooled) and any(k.startswith("3") for k in pooled)
    per_level_e = [
        json.loads((reports / lv / "verdict.json").read_text())["claims"][0]["diff"]
        for lv in ("tiny-r0.25", "tiny-r0.5")
    ]
    assert next(p for k, p in pooled.items() if k.startswith("1 at budget E"))["diff"] == pytest.approx(
        np.mean(per_level_e)
    )
    png = (reports / "tiny" / "tradeoff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    capsys.readouterr()
    spec_file = tmp_path / "levels.toml"
    spec_file.write_text(Path(TINY).read_text().replace("ratio = 0.5", "ratios = [0.25, 0.5]"))
    assert main(["summary", str(spec_file), "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "tiny-r0.25" in out and "tiny-r0.5" in out and "Scratch-E" in out and "fine-tuned" in out
    verdicts = (reports / "summary" / "verdicts.csv").read_text().splitlines()
    assert len(verdicts) == 3  # header + both settings
    table = pd.read_csv(reports / "summary" / "summary.csv")
    assert list(dict.fromkeys(table.setting)) == ["tiny-r0.25", "tiny-r0.5"]
    for level in ("tiny-r0.25", "tiny-r0.5"):  # one row per (arm, pick or baseline) of the setting's report
        verdict = json.loads((reports / level / "verdict.json").read_text())
        assert (table.setting == level).sum() == len(verdict["table"])
    assert set(table["published (%)"].dropna()) == {"missing"}  # tiny digits has no published row
    one_each = []  # the same two settings as two specs of their own
    for r in ("0.25", "0.5"):
        path = tmp_path / f"one-{r}.toml"
        path.write_text(
            Path(TINY)
            .read_text()
            .replace('name = "tiny"', f'name = "tiny-r{r}"')
            .replace("ratio = 0.5", f"ratio = {r}")
        )
        one_each.append(str(path))
    capsys.readouterr()
    assert main(["summary", *one_each, "--reports", str(reports), "--out", str(tmp_path / "two")]) == 0
    rows = (tmp_path / "two" / "verdicts.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("tiny-r0.25,") and rows[2].startswith("tiny-r0.5,")
    # a spec that names a published row: its numbers stand beside the paper-recipe rows, with their sources
    row = "imagenet/magnitude/resnet50/60%"
    Path(one_each[1]).write_text(Path(one_each[1]).read_text().replace('name = "tiny-r0.5"', f"{_row(row)}"))
    assert main(["summary", *one_each, "--reports", str(reports), "--out", str(tmp_path / "named")]) == 0
    named = pd.read_csv(tmp_path / "named" / "summary.csv", keep_default_na=False)
    numbers = published()[row]
    for arm, label in (("finetune", "fine-tuned"), ("scratch-e", "Scratch-E")):
        cell = named[(named.setting == "tiny-r0.5") & (named.arm == label) & (named.row == "paper recipe")]
        assert cell["published (%)"].item().startswith(f"{numbers[arm].mean:.2f} [")
    assert set(named[named.setting == "tiny-r0.25"]["published (%)"]) <= {"", "missing"}
    md = (tmp_path / "named" / "summary.md").read_text()
    assert numbers["finetune"].source in md and "tiny-r0.5: published row `imagenet/magnitude/resnet50/60%`" in md
    assert main(["summary", TINY, "--reports", str(tmp_path / "nothing")]) == 2
    assert "no report for setting 'tiny'" in capsys.readouterr().err


def test_a_shared_base_serves_every_seed_and_the_report_says_so(reported, tmp_path):
    _, args = reported
    out = tmp_path / "shared"
    assert main(["report", TINY, *args, "--set", "final.share_base=true", "--out", str(out)]) == 0
    verdict = json.loads((out / "tiny" / "verdict.json").read_text())
    assert any("one base served every seed" in c for c in verdict["caveats"])
    unpruned = [r for r in verdict["table"] if r["arm"] == "unpruned"]
    assert unpruned[0]["seeds"] == 1  # the shared base is one sample, not one per seed
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    first, second = final_seeds(0, 2)
    finals = client.search_runs([exp.experiment_id], f"tags.`rethink.kind` = 'final' and tags.base_seed = '{first}'")
    assert {r.data.tags["seed"] for r in finals if r.data.tags["arm"] == "finetune"} == {str(first), str(second)}


def test_a_changed_dataset_is_refused_before_training_and_the_offered_name_gets_its_own_studies(
    reported, tmp_path, capsys
):
    """The newcomer's path: the same spec on another dataset is refused before anything runs, with a name
    for the new setting offered; taken, that name gets its own studies, experiment and report, and the
    report's chosen configs are trials of those studies."""
    from sklearn.datasets import load_digits

    _, args = reported
    d = load_digits()
    x = np.round(d.images[:, :, ::-1] * 255 / 16).astype(np.uint8)  # mirrored digits: another dataset
    np.savez(
        tmp_path / "mirrored.npz", x_train=x[:1400], y_train=d.target[:1400], x_test=x[1400:], y_test=d.target[1400:]
    )
    client = mlflow.MlflowClient()
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    changed = ["study", TINY, *args, "--set", f"dataset=npz:{tmp_path / 'mirrored.npz'}"]
    capsys.readouterr()
    assert main([*changed, "--report-dir", str(tmp_path / "reports")]) == 2
    line = capsys.readouterr().err.strip()
    assert "--set name=tiny-mirrored" in line and "dataset" in line and len(line.splitlines()) == 1
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before
    assert not list((tmp_path / "runs").glob("tiny-mirrored*"))

    # taken (the path, not the search, is under test: one searched trial and the paper baseline per study, two
    # arms judged at E, no confirmation seeds)
    smaller = ["--set", "study.n_trials=1", "--set", 'study.baselines=["paper"]', "--set", "select.seeds=0"]
    smaller += ["--set", 'study.arms=["finetune", "scratch-e"]', "--set", 'verdict.budgets=["E"]']
    smaller += ["--set", 'verdict.primary="1@E"']
    assert main([*changed, "--set", "name=tiny-mirrored", *smaller, "--report-dir", str(tmp_path / "reports")]) == 0
    verdict = json.loads((tmp_path / "reports" / "tiny-mirrored" / "verdict.json").read_text())
    assert verdict["header"]["spec"] == "tiny-mirrored" and "npz:" in verdict["header"]["dataset"]
    assert json.loads((tmp_path / "reports" / "tiny" / "verdict.json").read_text())["header"]["dataset"] == "digits"
    exp = client.get_experiment_by_name("tiny-mirrored")
    finals = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final' and params.trial != ''")
    assert finals
    storage = args[1]
    for run in finals:
        study = optuna.load_study(study_name=f"tiny-mirrored.{run.data.tags['study_arm']}", storage=storage)
        trial = study.trials[int(run.data.params["trial"])]
        assert float(run.data.params["train.lr"]) == pytest.approx(trial.params["lr"])
        assert run.data.params["train.schedule"] == trial.params["schedule"]


def test_final_seeds_never_repeat_a_search_seed(reported):
    """Issue 24: the final runs' seeds (base init, data order, augmentation, and the scratch-init stream derived
    from them) are a stream apart from the search's, read back from the runs MLflow holds."""
    from rethink.arms import scratch_init_seed

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    search = {int(r.data.params["train.seed"]) for r in runs if r.data.tags.get("rethink.kind") in ("trial", "base")}
    final = {int(r.data.params["train.seed"]) for r in runs if r.data.tags.get("rethink.kind") == "final"}
    assert search == {0} and final == set(final_seeds(0, 2))  # the tiny spec: seed 0, two final seeds
    search_streams = search | {scratch_init_seed(s) for s in search}
    final_streams = final | {scratch_init_seed(s) for s in final}
    assert search_streams.isdisjoint(final_streams)
    assert len(final_streams) == 2 * len(final)  # no final stream repeats another


def test_a_version_bump_is_refused_against_the_old_studies_naming_it(reported, monkeypatch, capsys):
    """Issue 24: results of a method's old code are not found again as current: a bumped method version changes
    the studies' fields, and the spec is refused before anything runs, naming code_versions."""
    from dataclasses import replace

    from rethink.prune.registry import METHODS

    _, args = reported
    monkeypatch.setitem(METHODS, "l1-norm", replace(METHODS["l1-norm"], version=2))
    client = mlflow.MlflowClient()
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    capsys.readouterr()
    assert main(["study", TINY, *args, "--no-report"]) == 2
    line = capsys.readouterr().err.strip()
    assert "code_versions" in line and len(line.splitlines()) == 1
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before


def test_the_report_reads_as_text_no_nan_no_dict_no_unnamed_trial_and_the_verdict_figure_first(reported):
    """Issue 35 points 2 and 4: report.md and report.html hold no `nan`, no Python dict or tuple, no `trial
    nan`; counts are integers; the verdict figure stands right under the primary sentence in both."""
    import re

    out, _ = reported
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # the embedded figures' bytes
    for doc in (md, text):
        assert not re.search(r"\bnan\b", doc, re.IGNORECASE)
        assert "{'" not in doc and "('" not in doc and "trial nan" not in doc
    assert not re.search(r"\|\s*\d+\.0000\s*\|", md)  # a count printed as 3.0000
    lines = md.splitlines()
    primary = next(i for i, line in enumerate(lines) if line.startswith("**Primary comparison"))
    assert lines[primary + 2] == "![verdicts at a glance](verdicts.png)" and (out / "verdicts.png").is_file()
    first_img = text.index("<img")
    assert text.index("Primary comparison") < first_img < text.index("<table")
    assert 'alt="verdicts at a glance"' in text[first_img : first_img + 200]
    assert "per-seed base" in md  # the unpruned row's trial: its per-seed base, not a missing number
