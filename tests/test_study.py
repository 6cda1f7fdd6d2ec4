"""End to end on digits: studies per arm, the MLflow run tree, resume after a kill, best configs."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, free_port, start_mlflow_server, stop_process_group, study_cmd, wait_http
from study.cli import main
from study.query import best_configs
from study.tracking import trial_run_id

ARMS = ("finetune", "scratch-b")


@pytest.fixture
def tiny_run(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["study", TINY, "--storage", storage, "--workdir", str(tmp_path / "runs"), "--no-report"]) == 0
    return storage


def _trial_runs(client, experiment_id, arm_run):
    return client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{arm_run}'")


def test_study_records_every_trial_in_both_stores(tiny_run):
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    (root,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'spec'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{root.info.run_id}'")
    assert sorted(r.data.tags["rethink.kind"] for r in children) == ["arm", "arm", "base", "prune"]
    summaries = {s.study_name for s in optuna.get_all_study_summaries(tiny_run)}
    assert summaries == {f"tiny.{arm}" for arm in ARMS}
    for arm in ARMS:
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run)
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        assert [t.user_attrs.get("baseline") for t in trials[:2]] == ["paper", "literature"]
        assert study.user_attrs["sampler"]["seed"] == 0 and "optuna" in study.user_attrs["versions"]
        (arm_run,) = [r for r in children if r.data.tags.get("arm") == arm]
        assert arm_run.data.tags["optuna.study_name"] == f"tiny.{arm}"
        runs = {r.info.run_id: r for r in _trial_runs(client, exp.experiment_id, arm_run.info.run_id)}
        assert len(runs) == 4
        for t in trials:
            run = runs[t.user_attrs["mlflow_run_id"]]
            assert run.info.status == "FINISHED"
            assert run.data.tags["optuna.trial_number"] == str(t.number)
            assert run.data.tags["rethink.runtime"] == "cpu fp32"  # how it ran, for the record
            assert run.data.metrics["val_acc"] == pytest.approx(t.values[0])
            assert run.data.metrics["train_flops"] == pytest.approx(t.values[1])
            history = client.get_metric_history(run.info.run_id, "val_acc")
            assert [m.step for m in history if m.step < t.params["epochs"]] == list(range(t.params["epochs"]))
    paper_finetune = optuna.load_study(study_name="tiny.finetune", storage=tiny_run).trials[0]
    assert paper_finetune.params == {"lr": pytest.approx(0.0005), "augment": "none", "epochs": 1}


def test_rerun_adds_nothing(tiny_run, tmp_path):
    before = len(mlflow.search_runs(experiment_names=["tiny"], output_format="list"))
    assert main(["study", TINY, "--storage", tiny_run, "--workdir", str(tmp_path / "runs"), "--no-report"]) == 0
    assert len(mlflow.search_runs(experiment_names=["tiny"], output_format="list")) == before
    for arm in ARMS:
        assert len(optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run).trials) == 4


def test_changed_spec_is_refused_unless_new_study(tiny_run, tmp_path, capsys):
    args = ["study", TINY, "--storage", tiny_run, "--workdir", str(tmp_path / "runs"), "--set", "space.lr.high=0.2"]
    assert main(args) == 2
    assert "space.lr.high: 0.1 -> 0.2" in capsys.readouterr().err


@pytest.mark.slow
def test_best_from_a_live_mlflow_server_matches_optuna(tiny_run, tracking_uri, tmp_path, capsys):
    url, server = start_mlflow_server(tracking_uri, tmp_path / "artifacts")
    try:
        capsys.readouterr()
        assert main(["best", "--spec", "tiny", "--tracking-uri", url, "--json"]) == 0
        import json

        rows = {r["arm"]: r for r in json.loads(capsys.readouterr().out)}
        assert set(rows) == set(ARMS)
        for arm in ARMS:
            done = optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run).get_trials(
                states=(TrialState.COMPLETE,)
            )
            best_acc = max(t.values[0] for t in done)
            best = min((t for t in done if t.values[0] == best_acc), key=lambda t: (t.values[1], t.number))
            assert rows[arm]["val_acc"] == pytest.approx(best_acc)
            assert rows[arm]["trial"] == best.number
            assert float(rows[arm]["lr"]) == pytest.approx(best.params["lr"])
        mlflow.set_tracking_uri(url)
        capped = best_configs("tiny", max_epochs=1)
        assert (capped["epochs"].astype(int) <= 1).all()
    finally:
        stop_process_group(server)


@pytest.mark.slow
def test_optuna_dashboard_lists_the_studies(tiny_run):
    port = free_port()
    dash = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), tiny_run, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        import json

        data = json.loads(wait_http(f"http://127.0.0.1:{port}/api/studies", dash))
        names = {s["study_name"] for s in data["study_summaries"]}
        assert names == {f"tiny.{arm}" for arm in ARMS}
        study = next(s for s in data["study_summaries"] if s["study_name"] == "tiny.finetune")
        detail = json.loads(wait_http(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", dash))
        assert len(detail["trials"]) == 4
    finally:
        os.killpg(dash.pid, signal.SIGTERM)
        dash.wait(timeout=30)


def _complete_trials(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_resume_after_kill_completes_the_budget_without_duplicates(tracking_uri, tmp_path):
    db = tmp_path / "optuna.db"
    storage = f"sqlite:///{db}"
    cmd = study_cmd(storage, tmp_path / "runs", "--set", "space.epochs={low=3, high=3}", "--no-report")
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _complete_trials(db) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.3)  # into the next trial
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= _complete_trials(db) < 8, "the kill should land mid-study"
    assert subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True).returncode == 0

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 4
        assert [t.user_attrs.get("baseline") for t in complete[:2]] == ["paper", "literature"]
        finished = [r for r in runs if r.data.tags["arm"] == arm and r.info.status == "FINISHED"]
        assert sorted(r.info.run_id for r in finished) == sorted(t.user_attrs["mlflow_run_id"] for t in complete)
        for t in trials:
            if t.state == TrialState.FAIL:  # the killed trial; its run exists unless the kill came first
                run_id = trial_run_id(client, f"tiny.{arm}", t, [exp.experiment_id])
                run = client.get_run(run_id) if run_id else None
                assert run is None or (run.info.status == "KILLED" and "interrupted" in run.data.tags["failure_reason"])


@pytest.mark.slow
def test_parallel_workers_on_a_journal_finish_the_budget_exactly(tracking_uri, tmp_path):
    storage = f"journal:{tmp_path / 'optuna.log'}"
    cmd = study_cmd(
        storage, tmp_path / "runs", "--workers", "2", "--set", "space.epochs={low=1, high=2}", "--no-report"
    )
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from study.storage import make_storage

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'")
    assert all(r.info.status == "FINISHED" for r in runs)
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=make_storage(storage)).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 4
        assert all(t.user_attrs["fail_reason"].startswith("over budget") for t in trials if t.state == TrialState.FAIL)
        arm_runs = [r for r in runs if r.data.tags["arm"] == arm]
        assert sorted(r.info.run_id for r in arm_runs) == sorted(t.user_attrs["mlflow_run_id"] for t in complete)


def test_fixed_budget_mode_reports_epochs_and_prunes_consistently(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [
        "study",
        TINY,
        "--storage",
        storage,
        "--workdir",
        str(tmp_path / "runs"),
        "--no-report",
        "--set",
        "study.mode='fixed-budget'",
        "--set",
        "study.hpo_pruner='median'",
        "--set",
        "study.n_trials=6",
        "--set",
        "study.arms=['scratch-e']",
        "--set",
        "space.lr={low=0.0001, high=0.2}",
    ]
    assert main(args) == 0
    study = optuna.load_study(study_name="tiny.scratch-e", storage=storage)
    assert len(study.directions) == 1
    trials = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trials) == 6
    assert all("epochs" not in t.params for t in trials)  # fixed per arm (E), not searched
    client = mlflow.MlflowClient()
    for t in trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert t.intermediate_values and max(t.intermediate_values) < 3
        if t.state == TrialState.PRUNED:
            assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"
            assert "hpo_pruner" in run.data.tags["failure_reason"]
        else:
            assert run.info.status == "FINISHED" and len(t.intermediate_values) == 3
