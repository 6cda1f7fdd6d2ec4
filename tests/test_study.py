"""End to end on digits: studies per arm, the MLflow run tree, resume after a kill, best configs."""

import os
import signal
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from conftest import (
    TINY,
    assert_stores_agree,
    free_port,
    signal_when,
    start_mlflow_server,
    stop_process_group,
    study_cmd,
    wait_http,
)
from study.commands.cli import main
from study.records.query import best_configs
from study.records.tracking import trial_run_id

ARMS = ("finetune", "scratch")  # the tiny spec's studies: pareto mode searches Scratch-E and B in one
N_TRIALS = 2  # tiny.toml: searched trials per study
BASELINES = {"finetune": ["paper", "rewind"], "scratch": ["paper@E", "paper@B", "literature"]}


def _trial_runs(client, experiment_id, arm_run):
    return client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{arm_run}'")


def test_study_records_every_trial_in_both_stores(tiny_run):
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    (root,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'spec'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{root.info.run_id}'")
    assert sorted(r.data.tags["rethink.kind"] for r in children) == ["arm", "arm", "base", "prune"]
    summaries = {s.study_name for s in optuna.get_all_study_summaries(tiny_run)}
    assert summaries == {"tiny.finetune", "tiny.scratch"}  # pareto mode: no tiny.scratch-e / tiny.scratch-b
    for arm in ARMS:
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run)
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * (N_TRIALS + len(BASELINES[arm]))
        assert [t.user_attrs.get("baseline") for t in trials] == BASELINES[arm] + [None] * N_TRIALS
        assert study.user_attrs["sampler"]["seed"] == 0 and "optuna" in study.user_attrs["versions"]
        assert study.user_attrs["layout"] == 2 and study.metric_names == ["val_acc", "train_flops"]
        assert list(study.user_attrs["baselines"]) == BASELINES[arm] and all(study.user_attrs["baselines"].values())
        (arm_run,) = [r for r in children if r.data.tags.get("arm") == arm]
        assert arm_run.data.tags["optuna.study_name"] == f"tiny.{arm}"
        runs = {r.info.run_id: r for r in _trial_runs(client, exp.experiment_id, arm_run.info.run_id)}
        assert len(runs) == len(trials)
        for t in trials:
            run = runs[t.user_attrs["mlflow_run_id"]]
            assert run.info.status == "FINISHED"
            assert run.data.tags["optuna.trial_number"] == str(t.number)
            kind = "baseline" if t.user_attrs.get("baseline") else "searched"
            # How it ran, for the record: the baselines as one group, side by side (2 threads).
            together = f"cpu fp32 fused:parallel×{len(BASELINES[arm])}"
            assert run.data.tags["rethink.runtime"] == (together if kind == "baseline" else "cpu fp32")
            assert run.data.tags["rethink.trial_kind"] == kind
            assert run.data.tags.get("baseline", "") == t.user_attrs.get("baseline", "")
            assert run.data.metrics["val_acc"] == pytest.approx(t.values[0])
            assert run.data.metrics["train_flops"] == pytest.approx(t.values[1]) == t.user_attrs["train_flops"]
            assert run.data.metrics["pipeline_flops"] == pytest.approx(t.user_attrs["pipeline_flops"])
            history = client.get_metric_history(run.info.run_id, "val_acc")
            assert [m.step for m in history if m.step < t.params["epochs"]] == list(range(t.params["epochs"]))
    paper_finetune = optuna.load_study(study_name="tiny.finetune", storage=tiny_run).trials[0]
    assert paper_finetune.params == {
        "lr": pytest.approx(0.0005),
        "schedule": "constant",
        "augment": "none",
        "epochs": 1,
    }


def test_every_study_searches_n_trials_from_the_same_space(tiny_run, tmp_path):
    """Equal searched budgets: n_trials sampled trials in every study, baselines on top; the schedule is
    one of the space's shapes in every arm, from the same distribution. A larger n_trials continues."""
    dists = {}
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run).get_trials()
        searched = [t for t in trials if "baseline" not in t.user_attrs]
        assert len(searched) == N_TRIALS
        assert all(t.params["schedule"] in ("step", "cosine", "constant", "warmup-cosine") for t in trials)
        dists[arm] = {name: t.distributions[name] for t in searched for name in ("lr", "schedule", "augment", "epochs")}
    assert dists["finetune"] == dists["scratch"]
    args = ["study", TINY, "--storage", tiny_run, "--workdir", str(tmp_path / "runs"), "--no-report"]
    assert main([*args, "--set", "study.n_trials=3"]) == 0
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run).get_trials()
        assert len([t for t in trials if "baseline" not in t.user_attrs]) == 3
        assert len([t for t in trials if "baseline" in t.user_attrs]) == len(BASELINES[arm])  # not enqueued twice
    # a larger budget is a new spec run; its base and prune runs point at the checkpoints, none left RUNNING
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    roots = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'spec'")
    assert len(roots) == 2 and {r.info.status for r in roots} == {"FINISHED"}
    assert_stores_agree(tiny_run, "tiny")
    newest = max(roots, key=lambda r: r.info.start_time).info.run_id
    trunk = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{newest}' and tags.`rethink.kind` != 'arm'"
    )
    assert sorted(r.data.tags["rethink.kind"] for r in trunk) == ["base", "prune"]
    assert all("checkpoint reused" in r.data.tags["note"] and r.data.tags["rethink.made_in"] for r in trunk)


def test_finetune_can_decay_its_lr(tiny_run):
    """A fine-tune trial with schedule=step decays ×0.1 at 50% and 75% (the rewind baseline: lr 0.05, 3
    epochs, milestones at epochs 1 and 2), read back from its MLflow lr curve."""
    client = mlflow.MlflowClient()
    trials = optuna.load_study(study_name="tiny.finetune", storage=tiny_run).get_trials()
    step = [t for t in trials if t.params["schedule"] == "step" and t.params["epochs"] == 3]
    assert "rewind" in [t.user_attrs.get("baseline") for t in step]
    for t in step:
        lrs = [
            m.value
            for m in sorted(client.get_metric_history(t.user_attrs["mlflow_run_id"], "lr"), key=lambda m: m.step)
        ]
        assert len(lrs) == t.params["epochs"] == 3
        assert lrs == pytest.approx([t.params["lr"], t.params["lr"] * 0.1, t.params["lr"] * 0.01])


def test_pipeline_flops_add_the_base_training_to_finetune_only(tiny_run):
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    (base,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'base'")
    base_train = base.data.metrics["train_flops"]
    assert base_train > 0
    for arm, inherited in (("finetune", base_train), ("scratch", 0.0)):
        for t in optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run).get_trials():
            run = client.get_run(t.user_attrs["mlflow_run_id"])
            assert run.data.metrics["pipeline_flops"] == pytest.approx(run.data.metrics["train_flops"] + inherited)
            assert t.user_attrs["pipeline_flops"] == pytest.approx(t.user_attrs["train_flops"] + inherited)


def test_old_layout_is_refused_before_any_training(tracking_uri, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    old = optuna.create_study(study_name="tiny.scratch-e", storage=storage, directions=["maximize", "minimize"])
    old.set_user_attr("spec_fields", {"name": "tiny"})
    args = ["study", TINY, "--storage", storage, "--workdir", str(tmp_path / "runs"), "--no-report"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "older layout" in err and "tiny.scratch-e" in err and "--new-study" in err
    assert not (tmp_path / "runs").exists()  # refused before the base trained
    assert mlflow.MlflowClient().get_experiment_by_name("tiny") is None
    # the new layout beside the old study, never mixed with it (its studies made, no trial needed to show it)
    assert main([*args, "--new-study", "--prepare-only"]) == 0
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"tiny.scratch-e", "tiny.finetune", "tiny.scratch"}
    assert len(optuna.load_study(study_name="tiny.scratch-e", storage=storage).trials) == 0


def test_rerun_adds_nothing(tiny_run, tmp_path):
    before = len(mlflow.search_runs(experiment_names=["tiny"], output_format="list"))
    assert main(["study", TINY, "--storage", tiny_run, "--workdir", str(tmp_path / "runs"), "--no-report"]) == 0
    assert len(mlflow.search_runs(experiment_names=["tiny"], output_format="list")) == before
    for arm in ARMS:
        assert len(optuna.load_study(study_name=f"tiny.{arm}", storage=tiny_run).trials) == N_TRIALS + len(
            BASELINES[arm]
        )


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
        assert len(detail["trials"]) == N_TRIALS + len(BASELINES["finetune"])
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


def _running_after_two(db: Path) -> tuple[str, int] | None:
    """A trial RUNNING once two have completed: (study name, trial number)."""
    if _complete_trials(db) < 2:
        return None
    with sqlite3.connect(db, timeout=1) as con:
        return con.execute(
            "select s.study_name, t.number from trials t join studies s on s.study_id = t.study_id "
            "where t.state = 'RUNNING'"
        ).fetchone()


@pytest.mark.slow
def test_resume_after_kill_completes_the_budget_without_duplicates(tracking_uri, tmp_path):
    db = tmp_path / "optuna.db"
    storage = f"sqlite:///{db}"
    cmd = study_cmd(storage, tmp_path / "runs", "--no-report")
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study_name, number = signal_when(proc.pid, partial(_running_after_two, db), signal.SIGKILL, timeout=240, proc=proc)
    proc.wait()
    assert 2 <= _complete_trials(db) < 2 * N_TRIALS + 5, "the kill should land mid-study"
    assert subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True).returncode == 0

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == N_TRIALS + len(BASELINES[arm])
        assert sorted(t.user_attrs["baseline"] for t in complete if "baseline" in t.user_attrs) == sorted(
            BASELINES[arm]
        )
        finished = [r for r in runs if r.data.tags["arm"] == arm and r.info.status == "FINISHED"]
        assert sorted(r.info.run_id for r in finished) == sorted(t.user_attrs["mlflow_run_id"] for t in complete)
        for t in trials:
            if t.state == TrialState.FAIL:  # the killed trial; its run exists unless the kill came first
                run_id = trial_run_id(client, f"tiny.{arm}", t, [exp.experiment_id])
                run = client.get_run(run_id) if run_id else None
                assert run is None or (run.info.status == "KILLED" and "interrupted" in run.data.tags["failure_reason"])
    assert_stores_agree(storage, "tiny")  # and no run of any kind is left RUNNING
    killed = optuna.load_study(study_name=study_name, storage=storage).trials[number]
    assert killed.state == TrialState.FAIL  # the trial running at the kill, failed by the rerun and retried


@pytest.mark.slow
def test_parallel_workers_on_a_journal_finish_the_budget_exactly(tracking_uri, tmp_path):
    storage = f"journal:{tmp_path / 'optuna.log'}"
    cmd = study_cmd(storage, tmp_path / "runs", "--workers", "2", "--no-report")
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from study.records.storage import make_storage

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'")
    assert all(r.info.status == "FINISHED" for r in runs)
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=make_storage(storage)).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == N_TRIALS + len(BASELINES[arm])
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
    assert len(trials) == 6 + 2  # searched + the paper and literature baselines
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
        # a median pruner compares a trial with the finished ones: baselines train one at a time here
        assert run.data.tags["rethink.runtime"] == "cpu fp32"


def test_the_budget_is_per_kind_so_a_dead_workers_baseline_is_never_displaced():
    """Round 6 of the fault loop: a worker died in the `rewind` baseline; before its heartbeat failed it and
    enqueued the retry, another worker started one more searched trial, which one total budget (searched +
    baselines) let run, and the retry was left WAITING. Per kind, the extra searched trial is over budget and
    the retried baseline is not."""
    from study.search.objective import over_budget

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({}, user_attrs={"baseline": "paper"})
    study.enqueue_trial({}, user_attrs={"baseline": "rewind"})
    paper, rewind = study.ask(), study.ask()
    study.tell(paper, [0.9, 1.0])
    study.tell(rewind, state=TrialState.FAIL)  # its worker died: the heartbeat failed it
    for _ in range(2):  # the two searched trials of the budget
        searched = study.ask()
        assert not over_budget(searched, 2)
        study.tell(searched, [0.8, 1.0])
    extra = study.ask()  # asked before the retry was enqueued: a third searched trial
    assert over_budget(extra, 2)  # the old total (4) saw 3 finished trials ahead and let it run
    study.tell(extra, state=TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={"baseline": "rewind", "retried_from": rewind.number})
    retry = study.ask()
    assert retry.user_attrs["baseline"] == "rewind" and not over_budget(retry, 2)
    study.enqueue_trial({}, user_attrs={"baseline": "rewind"})  # enqueued twice (two workers' recovery)
    assert over_budget(study.ask(), 2)  # the retry runs under a lower number: the baseline runs once
    assert over_budget(study.ask(), 2)  # and a fresh searched trial stays over budget
