"""`--engine ray` on a real local Ray instance (2 CPUs): the tiny spec end to end against the local engine, a
Ray worker SIGKILLed in a trial and in a final run, Ctrl-C on the driver and the resume, checkpoints that
reach tasks with no shared working directory, the gRPC storage proxy (SQLite) and PostgreSQL paths, and
secrets kept out of Ray. One Ray instance serves the module; the subprocess driver joins it by address."""

import collections
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import (
    TINY,
    assert_stores_agree,
    interruptible,
    new_database,
    running_trial,
    signal_when,
    study_args,
)
from study.commands.cli import main
from study.plan.spec import SpecError
from study.records.cluster import Endpoints, EngineOptions, Parcel, state_digest
from study.records.storage import make_storage

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

CAPPED = ["--set", "study.mode=capped", "--set", 'space.epochs={ of = "cap", low = 0.2 }']
# Kept small for CI's 2 cores: one searched trial and the paper baseline per study, judged at E and B (so
# three studies: no scratch-b@P), one final seed.
SMALL = [*CAPPED, "--set", "study.n_trials=1", "--set", "final.seeds=1", "--set", 'verdict.budgets=["E", "B"]']
SMALL += ["--set", 'study.baselines=["paper"]']
STUDIES = ("finetune@E", "scratch-e@E", "scratch-b@B")


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module (2 CPUs, as CI has); `--engine ray` in this process joins it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # CI has no internet; nothing to report anyway
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _runs(experiment: str = "tiny", uri: str | None = None):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=5000)


def _tree(runs) -> collections.Counter:
    return collections.Counter((r.data.tags.get("rethink.kind"), r.info.status) for r in runs)


def _studies(storage: str) -> dict[str, list]:
    """Each study's trials: number, state, kind, parameters and value."""
    out = {}
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        trials = optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
        out[s.study_name] = [
            (t.number, t.state.name, t.user_attrs.get("baseline") or "searched", t.params, t.value) for t in trials
        ]
    return out


# ---- the tiny spec end to end, against the local engine ----------------------------------------------------


@pytest.mark.slow  # a whole study twice, once in Ray worker processes (about 60 s): the process-level step
def test_tiny_spec_under_ray_matches_the_local_engine(ray_address, tracking_uri, tmp_path, monkeypatch):
    """One run at a time (2 CPUs each on the 2-CPU instance) and unfused, as the local engine trains with
    --fuse off: the same studies trial by trial (state, kind, parameters, value), the same run tree (kind ×
    status), the same report numbers; nothing RUNNING; Optuna and MLflow agree trial by trial; every trial
    and final run ran in a Ray worker, and the checkpoints reached the tasks' own folder (no shared
    --workdir) byte for byte."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def args(folder):  # each engine its own stores
        folder.mkdir()
        storage, tracking = f"sqlite:///{folder / 'optuna.db'}", f"sqlite:///{folder / 'mlflow.db'}"
        extra = ["--fuse", "off", "--report-dir", str(folder / "reports"), "--tracking-uri", tracking]
        return study_args(storage, folder / "runs", *SMALL, *extra)

    local = tmp_path / "local"
    task_dir = tmp_path / "task-folder"
    ray_dir = tmp_path / "ray"
    # every training on 2 threads, as each Ray task trains (--cpus-per-run 2), whatever OMP_NUM_THREADS the step
    # sets: the trunk (in this process under either engine) and the local engine's runs
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(args(local)) == 0
        monkeypatch.setenv("RETHINK_RAY_WORKDIR", str(task_dir))
        assert main([*args(ray_dir), "--engine", "ray", "--cpus-per-run", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    local_runs = _runs(uri=f"sqlite:///{local / 'mlflow.db'}")
    local_studies = _studies(f"sqlite:///{local / 'optuna.db'}")
    storage = f"sqlite:///{ray_dir / 'optuna.db'}"
    mlflow.set_tracking_uri(f"sqlite:///{ray_dir / 'mlflow.db'}")
    runs = _runs()

    assert set(local_studies) == {f"tiny.{k}" for k in STUDIES}
    assert _studies(storage) == local_studies  # trial by trial: state, kind, parameters, value
    assert _tree(runs) == _tree(local_runs)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    counts = assert_stores_agree(storage, "tiny")
    assert counts == {"COMPLETE": sum(len(trials) for trials in local_studies.values())}
    me = str(os.getpid())
    for r in runs:
        if r.data.tags.get("rethink.kind") in ("final", "confirm"):
            assert r.data.tags["rethink.worker_pid"] != me, r.info.run_name
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        for t in optuna.load_study(study_name=s.study_name, storage=storage).trials:
            assert t.user_attrs["worker_pid"] != os.getpid()
    table = json.loads((ray_dir / "reports/tiny/verdict.json").read_text())["table"]
    local_table = json.loads((local / "reports/tiny/verdict.json").read_text())["table"]
    assert [(r["arm"], r["choice"], r["test_acc_mean"]) for r in table] == [
        (r["arm"], r["choice"], r["test_acc_mean"]) for r in local_table
    ]
    driver = sorted((ray_dir / "runs" / "tiny").glob("base-*/*.pt"))
    tasks = sorted((task_dir / "tiny").glob("base-*/*.pt"))
    assert [p.name for p in tasks] == [p.name for p in driver] and len(tasks) == 3  # model, init, pruned
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in tasks] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in driver
    ]


@pytest.mark.slow  # trials in Ray worker processes (about 14 s): the process-level step
def test_fixed_budget_tasks_use_the_studys_own_hpo_pruner(ray_address, tracking_uri, tmp_path):
    """A task reports each epoch to the study's own pruner: with `hpo_pruner = "none"` no trial is pruned (a
    study loaded with Optuna's default, a median pruner, would prune the weak ones), and every trial's
    intermediate values are its epochs' validation accuracies."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    fixed = ["--set", "study.mode='fixed-budget'", "--set", "study.hpo_pruner='none'", "--set", "study.n_trials=6"]
    fixed += ["--set", "study.arms=['scratch-e']", "--set", "space.lr={low=0.0001, high=0.2}"]
    assert main(study_args(storage, tmp_path / "runs", *fixed, "--no-report", "--engine", "ray")) == 0
    trials = optuna.load_study(study_name="tiny.scratch-e", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * (6 + 2)  # searched + paper, literature
    client = mlflow.MlflowClient()
    for t in trials:
        logged = {m.step: m.value for m in client.get_metric_history(t.user_attrs["mlflow_run_id"], "val_acc")}
        reported = dict(t.intermediate_values)  # epochs 0-2; the run also logs its final val_acc at step 3
        assert len(reported) == 3 and {k: logged[k] for k in reported} == pytest.approx(reported)
    assert_stores_agree(storage, "tiny")


@pytest.mark.slow
def test_section5_arms_train_in_ray_tasks_and_give_claim4(ray_address, tracking_uri, tmp_path):
    """The uniform and guided arms under --engine ray: the tasks rebuild their architectures from the trunk
    (the same record the driver logged), every trial and final run of them trains in a worker, and the
    report carries claim 4."""
    storage, reports = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "reports"
    arms = ["--set", "study.arms=['scratch-e', 'scratch-b', 'uniform', 'guided']", "--set", "prune.method=magnitude"]
    extra = ["--report-dir", str(reports), "--engine", "ray", "--cpus-per-run", "2"]
    assert main(study_args(storage, tmp_path / "runs", *SMALL, *arms, *extra)) == 0
    runs = _runs()
    me = str(os.getpid())
    mine = [r for r in runs if r.data.tags.get("arm", "").startswith(("uniform", "guided"))]
    assert {r.data.tags["rethink.kind"] for r in mine} >= {"trial", "final"}
    for r in mine:
        if r.data.tags["rethink.kind"] in ("final", "confirm"):
            assert r.data.tags["rethink.worker_pid"] != me, r.info.run_name
    for arm in ("uniform@E", "uniform@B", "guided@E", "guided@B"):
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=storage)
        assert all(t.user_attrs["worker_pid"] != os.getpid() for t in study.trials)
    verdict = json.loads((reports / "tiny" / "verdict.json").read_text())
    assert {c["comparison_id"] for c in verdict["claims"]} >= {"4@E", "4@B", "4g@E", "4g@B"}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert_stores_agree(storage, "tiny")


# ---- faults ----------------------------------------------------------------------------------------------------


def _running_trial(storage: str, driver: int, min_epochs: int = 0) -> tuple[str, int, int] | None:
    """A trial a Ray worker (not the driver) is training, of `min_epochs` or more: (study, number, pid)."""

    def accept(t) -> bool:
        pid = t.user_attrs.get("worker_pid")
        return bool(pid) and pid != driver and t.params["epochs"] >= min_epochs

    found = running_trial(storage, [f"tiny.{k}" for k in STUDIES], accept)
    return None if found is None else (found[0], found[1].number, found[1].user_attrs["worker_pid"])


def _running_final_run(client) -> tuple[str, int] | None:
    exp = client.get_experiment_by_name("tiny")
    if exp is None:
        return None
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING' and tags.`rethink.kind` = 'final'"):
        if pid := r.data.tags.get("rethink.worker_pid"):
            return r.info.run_id, int(pid)
    return None


@pytest.mark.slow
def test_a_ray_task_trains_its_run_on_the_processes_asked_for(ray_address, tracking_uri, tmp_path):
    """--engine ray --gpus-per-trial 2: each trial is a Ray task that leads a team of two processes (on a
    GPU node, its two GPUs); recorded as such, run in a worker, the stores agree."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    one = ["--set", "study.arms=['scratch-e']", "--set", "study.n_trials=1", "--set", 'study.baselines=["paper"]']
    extra = ["--engine", "ray", "--gpus-per-trial", "2", "--device", "cpu", "--no-report"]
    assert main(study_args(storage, tmp_path / "runs", *one, *extra)) == 0
    assert assert_stores_agree(storage, "tiny") == {"COMPLETE": 2}  # the searched trial and the paper baseline
    trials = [r for r in _runs() if r.data.tags.get("rethink.kind") == "trial"]
    assert len(trials) == 2 and {r.data.tags["rethink.runtime"] for r in trials} == {"cpu fp32 ddp×2"}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials:
            assert t.user_attrs["worker_pid"] != os.getpid()


@pytest.mark.slow  # kills and signals processes: the slow step's kind (about 40 s each)
def test_a_worker_killed_in_a_trial_and_in_a_final_run_loses_nothing(ray_address, tracking_uri, tmp_path):
    """SIGKILL of the Ray worker running a trial, then of the one running a final run: the trial ends FAIL
    (lost) with its run KILLED and is retried with the same parameters; the final run ends KILLED and its
    group trains again; budgets stay exact, one FINISHED run per final digest, nothing RUNNING."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = study_args(storage, tmp_path / "runs", *SMALL, "--engine", "ray", "--report-dir", str(tmp_path / "rep"))
    make_storage(storage)  # its tables made before the watcher below reads it alongside the driver
    killed: dict = {}
    stop = threading.Event()
    client = mlflow.MlflowClient(tracking_uri)

    def killer():
        while not stop.is_set():
            try:
                if "trial" not in killed and (found := _running_trial(storage, os.getpid())):
                    os.kill(found[2], signal.SIGKILL)
                    killed["trial"] = found
                elif "trial" in killed and "final" not in killed and (run := _running_final_run(client)):
                    os.kill(run[1], signal.SIGKILL)
                    killed["final"] = run
            except Exception:  # noqa: BLE001 - a store busy for a moment: look again
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        assert main(args) == 0
    finally:
        stop.set()
        thread.join()
    assert set(killed) == {"trial", "final"}, killed

    study_name, number, _ = killed["trial"]
    study = optuna.load_study(study_name=study_name, storage=storage)
    dead = study.trials[number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["lost"]
    assert "Ray worker" in dead.user_attrs["fail_reason"]
    dead_run = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "KILLED" and "Ray worker" in dead_run.data.tags["failure_reason"]
    retry = [t for t in study.trials if t.user_attrs.get("retried_from") == number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == dead.params
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        trials = optuna.load_study(study_name=s.study_name, storage=storage).trials
        searched = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs.get("baseline")]
        assert len(searched) == 1, s.study_name  # study.n_trials=1: exact
        done = collections.Counter(t.user_attrs.get("baseline") for t in trials if t.state == TrialState.COMPLETE)
        assert set(done) - {None} == set(s.user_attrs["baselines"])  # every baseline once
        assert all(v == 1 for k, v in done.items() if k is not None)
    assert_stores_agree(storage, "tiny")

    final_run = client.get_run(killed["final"][0])
    assert final_run.info.status == "KILLED" and "Ray worker was lost" in final_run.data.tags["failure_reason"]
    finals = [r for r in _runs() if r.data.tags.get("rethink.kind") == "final"]
    per_digest = collections.Counter(r.data.tags["rethink.digest"] for r in finals if r.info.status == "FINISHED")
    assert per_digest[final_run.data.tags["rethink.digest"]] == 1  # trained again, once
    assert set(per_digest.values()) == {1}
    assert (tmp_path / "rep" / "tiny" / "verdict.json").is_file()

    # `rethink report --engine ray` finds every confirmation and final run again: it trains nothing
    trained = {r.info.run_id for r in _runs() if r.data.tags.get("rethink.kind") in ("final", "confirm")}
    report = ["report", *args[1:2], *SMALL, "--storage", storage, "--workdir", str(tmp_path / "runs")]
    assert main([*report, "--out", str(tmp_path / "rep2"), "--engine", "ray"]) == 0
    assert {r.info.run_id for r in _runs() if r.data.tags.get("rethink.kind") in ("final", "confirm")} == trained


@pytest.mark.slow  # kills and signals processes: the slow step's kind (about 40 s each)
def test_ctrl_c_on_a_driver_over_postgresql_stops_the_tasks_and_a_rerun_resumes(
    ray_address, postgres, tracking_uri, tmp_path, monkeypatch
):
    """A driver (its own process, joined to the module's cluster by --ray-address) over PostgreSQL, which the
    tasks reach directly, gets SIGINT while Ray runs its trials: exit 130, every run ended (none RUNNING),
    the interrupted trials lost; the same command again finishes every study with them retried. The
    password of the storage URL (given in the environment) appears in none of the Ray session's log files,
    nor in any MLflow tag or param."""
    secret = "pw-ray-7f3a91"  # trust auth ignores it; what matters is where it could leak
    storage = new_database(postgres, "rayengine").replace("postgres@", f"postgres:{secret}@")
    monkeypatch.setenv("RETHINK_STORAGE", storage)  # never on a command line
    args = ["study", TINY, "--workdir", str(tmp_path / "runs"), *SMALL, "--no-report"]
    args += ["--engine", "ray", "--ray-address", ray_address]
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.commands.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        # a trial of 8+ epochs (a Scratch-B one): seconds long, so the stop comes while it trains
        probe = partial(_running_trial, storage, proc.pid, 8)
        found = signal_when(proc.pid, probe, signal.SIGINT, proc=proc)
        assert proc.wait(timeout=120) == 130, proc.stderr.read()[-2000:]
    finally:
        proc.kill()
    assert not [r.info.run_name for r in _runs() if r.info.status == "RUNNING"]
    study = optuna.load_study(study_name=found[0], storage=storage)
    stopped = study.trials[found[1]]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["lost"]
    assert mlflow.MlflowClient().get_run(stopped.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert_stores_agree(storage, "tiny")

    assert main(args) == 0  # resume, in this process this time
    study = optuna.load_study(study_name=found[0], storage=storage)
    retry = [t for t in study.trials if t.user_attrs.get("retried_from") == found[1]]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == stopped.params
    assert retry[0].user_attrs["worker_pid"] != os.getpid()  # a task wrote it to PostgreSQL itself
    assert_stores_agree(storage, "tiny")
    logs = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    assert not [p for p in logs.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    for r in _runs():
        assert secret not in str(r.data.tags) and secret not in str(r.data.params)
    assert secret not in repr(Endpoints(storage, tracking_uri))


def test_a_later_driver_retries_only_what_a_dead_driver_left_running(tracking_uri, tmp_path):
    """A driver killed outright (SIGKILL: no chance to stop its tasks, which Ray kills with it) leaves its
    trials RUNNING under its `driver_pid`; a later Ray driver retries those, on any storage, and leaves a
    live driver's trial and a local worker's trial (no driver_pid) alone."""
    from study.records.tracking import RunTree
    from study.search.reconcile import recover_interrupted

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    owners = {"dead driver": dead.pid, "live driver": os.getppid(), "local worker": None}
    trials = {}
    for who, pid in owners.items():
        t = study.ask({"lr": optuna.distributions.FloatDistribution(0.001, 0.1)})
        if pid is not None:
            t.set_user_attr("driver_pid", pid)
            t.set_user_attr("driver_host", socket.gethostname())
        trials[who] = t.number
    assert recover_interrupted(study, RunTree("s"), owner="driver") == 1
    states = {who: study.trials[n].state for who, n in trials.items()}
    assert states == {
        "dead driver": TrialState.FAIL,
        "live driver": TrialState.RUNNING,
        "local worker": TrialState.RUNNING,
    }
    lost, retry = study.trials[trials["dead driver"]], study.trials[-1]
    assert lost.user_attrs["lost"] and retry.state == TrialState.WAITING
    assert retry.user_attrs["retried_from"] == lost.number and retry.system_attrs["fixed_params"] == lost.params


# ---- the pieces, and one-line errors ------------------------------------------------------------------------


def test_a_parcel_refuses_bytes_that_do_not_match_their_digest(tmp_path):
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights" * 100)
    good = Parcel.of(src, "base-x/model.pt")
    assert good.unpack(tmp_path / "task").read_bytes() == src.read_bytes()
    bad = Parcel(good.name, good.data[:-1] + b"X", good.sha256)
    with pytest.raises(SpecError, match="do not match sha256"):
        bad.unpack(tmp_path / "other")
    assert not (tmp_path / "other" / "base-x" / "model.pt").exists()


def test_state_digest_sees_any_change_of_a_weight():
    import torch

    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    digest = state_digest(state)
    assert digest == state_digest({k: v.clone() for k, v in state.items()})
    state["w"][1, 2] += 1e-6
    assert state_digest(state) != digest


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--workers", "2"], "drop --workers N"),
        (["--cpus-per-run", "0"], "--cpus-per-run 0.0: expected a number > 0"),
        (["--gpus-per-run", "1.5"], "--gpus-per-run 1.5: above 1 it must be whole"),
        (["--gpus-per-run", "1", "--gpus-per-trial", "2"], "--gpus-per-run 1 with --gpus-per-trial 2: each task"),
    ],
)
def test_bad_engine_options_are_one_line_errors_before_anything_runs(extra, expect, tmp_path, capsys):
    args = study_args(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs", "--engine", "ray", *extra)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs" / "tiny").exists()


@pytest.mark.slow  # needs a Ray instance (about 8 s to start and stop): with the server tests
def test_resources_no_node_has_are_refused(ray_address, tmp_path, capsys):
    args = study_args(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs", "--engine", "ray", "--cpus-per-run", "64")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--cpus-per-run 64.0 / --gpus-per-run 0: no node of the Ray cluster has that much" in err


@pytest.mark.slow  # needs a Ray instance (about 8 s to start and stop): with the server tests
def test_a_task_folder_that_cannot_be_written_is_one_line_before_any_training(
    ray_address, tracking_uri, tmp_path, capsys, monkeypatch
):
    (tmp_path / "afile").write_text("in the way")
    monkeypatch.setenv("RETHINK_RAY_WORKDIR", str(tmp_path / "afile" / "tasks"))
    args = study_args(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs", "--engine", "ray", "--no-report")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rethink study: error: RETHINK_RAY_WORKDIR (where Ray tasks keep the checkpoints")
    assert f"{tmp_path / 'afile' / 'tasks'}: cannot be created or written (Not a directory" in err[-1]
    assert not (tmp_path / "runs" / "tiny").exists()  # refused before the base trained


def test_without_ray_installed_the_engine_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    args = study_args(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "runs", "--engine", "ray")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "rethink study: error: " + (
        "--engine ray needs Ray, which is not installed: pip install -e '.[ray]' (or pip install 'ray[default]')"
    )
    assert EngineOptions().name == "local"  # the default engine needs no Ray
