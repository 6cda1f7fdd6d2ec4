"""Scale out and survive: PostgreSQL and journal storages with killed workers, SIGINT, bad storages,
and `rethink serve` on loopback. Real servers only, on 127.0.0.1; PostgreSQL is started by a fixture."""

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from conftest import (
    REPO,
    TINY,
    assert_stores_agree,
    free_port,
    interruptible,
    new_database,
    running_trial,
    signal_when,
    start_mlflow_server,
    stop_process_group,
    study_args,
    study_cmd,
    wait_http,
    while_frozen,
)
from study.records.storage import make_storage

ARMS = ("finetune", "scratch")  # the tiny spec's studies: pareto mode has one scratch study
CLI = [sys.executable, "-m", "study.commands.cli"]


@pytest.fixture
def mlflow_server(tmp_path):
    url, proc = start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts")
    yield url
    stop_process_group(proc)


def running_trial_of(storage_url: str, pids: set[int] | None) -> tuple[int, str, int] | None:
    """A RUNNING trial with its MLflow run made, of one of `pids` (None: any process; SQLite records none)."""
    found = running_trial(
        storage_url, [f"tiny.{a}" for a in ARMS], lambda t: pids is None or t.user_attrs.get("worker_pid") in pids
    )
    return (
        None
        if found is None
        else (found[1].user_attrs.get("worker_pid"), found[0].removeprefix("tiny."), found[1].number)
    )


def check_record(storage_url: str, tracking: str, budget: int, killed: tuple[str, int]) -> dict:
    """Exact budget, the killed trial retried, one FINISHED run per complete trial, no RUNNING runs."""
    mlflow.set_tracking_uri(tracking)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'trial'")}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    figures = {"trials_per_worker": {}, "retries": 0}
    storage = make_storage(storage_url)
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=storage)
        assert len(complete) == budget + len(study.user_attrs["baselines"]), arm  # searched + baselines
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], [
            (t.number, t.state.name, t.params, t.user_attrs) for t in trials
        ]
        finished = sorted(i for i, r in runs.items() if r.data.tags["arm"] == arm and r.info.status == "FINISHED")
        assert finished == sorted(t.user_attrs["mlflow_run_id"] for t in complete)
        for t in complete:
            pid = t.user_attrs["worker_pid"]
            figures["trials_per_worker"][pid] = figures["trials_per_worker"].get(pid, 0) + 1
        if arm == killed[0]:
            dead = trials[killed[1]]
            assert dead.state == TrialState.FAIL
            assert runs[dead.user_attrs["mlflow_run_id"]].info.status in ("FAILED", "KILLED")
            assert "failure_reason" in runs[dead.user_attrs["mlflow_run_id"]].data.tags
            retry = [
                t
                for t in trials
                if t.number > dead.number and t.params == dead.params and t.state == TrialState.COMPLETE
            ]
            assert retry, "the killed trial was not retried"
            figures["retries"] += 1
            figures["retry_started"] = retry[0].datetime_start.timestamp()
    return figures


def _trial_still_running(storage_url: str, arm: str, number: int, pid: int) -> bool | None:
    trial = optuna.load_study(study_name=f"tiny.{arm}", storage=make_storage(storage_url)).trials[number]
    return True if trial.state == TrialState.RUNNING and trial.user_attrs.get("worker_pid") == pid else None


def _kill_one_worker_mid_trial(storage_url: str, procs: list[subprocess.Popen]) -> tuple[str, int, float]:
    """SIGKILL a worker while one of its trials is RUNNING: checked with the worker frozen (while_frozen), so
    the kill cannot race the end of the trial. Returns that trial and the time the worker stopped (frozen
    just before the kill: a heartbeat may find it dead, and retry its trial, before the kill lands)."""
    pids = {p.pid for p in procs}
    deadline = time.time() + 180
    while time.time() < deadline:
        found = running_trial_of(storage_url, pids)
        if found:
            pid, arm, number = found
            still = partial(_trial_still_running, storage_url, arm, number, pid)
            stopped = time.time()  # the worker stops beating from here: frozen, then killed
            if while_frozen(pid, still, partial(os.kill, pid, signal.SIGKILL)):
                return arm, number, stopped
        time.sleep(0.2)
    raise TimeoutError("no worker started a trial")


SPEC_ARGS = [
    "--set",
    "study.n_trials=2",
    "--set",
    "study.arms=['finetune', 'scratch-b']",  # two studies: finetune, scratch
    "--set",
    "space.epochs={low=6, high=7}",  # long enough to be caught mid-trial
    "--set",
    "study.baselines=[]",  # theirs (1 to 10 epochs) would lie outside such a space
    "--set",
    'verdict.budgets=["E"]',  # judged at E only (3 epochs): a 7-epoch range cannot reach B = 10 or P = 13
    "--set",
    'verdict.primary="1@E"',
    "--no-report",
]


@pytest.mark.slow
def test_postgres_workers_survive_a_killed_worker(postgres, mlflow_server, tmp_path, capsys):
    storage = new_database(postgres, "killtest")
    env = os.environ | {"RETHINK_HEARTBEAT": "1", "OMP_NUM_THREADS": "1"}
    common = [*study_args(storage, tmp_path / "runs", "--tracking-uri", mlflow_server, *SPEC_ARGS)]
    prep = subprocess.run([*CLI, *common, "--prepare-only"], env=env, cwd=REPO, capture_output=True, text=True)
    assert prep.returncode == 0, prep.stderr[-3000:]
    logs = [open(tmp_path / f"worker{i}.log", "w+") for i in range(3)]  # noqa: SIM115
    workers = [subprocess.Popen([*CLI, *common, "--worker"], env=env, cwd=REPO, stdout=log, stderr=log) for log in logs]
    arm, number, stopped_at = _kill_one_worker_mid_trial(storage, workers)
    codes = [w.wait(timeout=300) for w in workers]
    tails = [(log.seek(0), log.read()[-1500:])[1] for log in logs]
    assert sorted(codes) == [-signal.SIGKILL, 0, 0], tails
    figures = check_record(storage, mlflow_server, 2, (arm, number))
    # Under load a worker's heartbeat can go stale before the test stops it (the retry then starts a little
    # before `stopped_at`, seen: -0.2 s); the figure is reported, the retry and the exact budget are asserted.
    figures["stop_to_retry_start_s"] = figures.pop("retry_started") - stopped_at
    assert figures["stop_to_retry_start_s"] < 60
    with capsys.disabled():
        print("\npostgres kill figures:", json.dumps(figures, default=str))


@pytest.mark.slow
def test_journal_workers_survive_a_killed_worker(mlflow_server, tmp_path, capsys):
    storage = f"journal:{tmp_path / 'optuna.log'}"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    common = [*study_args(storage, tmp_path / "runs", "--tracking-uri", mlflow_server, *SPEC_ARGS)]
    parent = subprocess.Popen(
        [*CLI, *common, "--workers", "3"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    import psutil

    deadline = time.time() + 120
    children: list = []
    while len(children) < 3 and time.time() < deadline:
        children = psutil.Process(parent.pid).children()
        time.sleep(0.2)

    class _P:  # the worker pids, for the helper
        def __init__(self, pid):
            self.pid = pid

    arm, number, stopped_at = _kill_one_worker_mid_trial(storage, [_P(c.pid) for c in children])
    _, err = parent.communicate(timeout=300)
    assert parent.returncode == 0, err[-2000:]
    assert "1 trial(s) retried" in err
    figures = check_record(storage, mlflow_server, 2, (arm, number))
    figures["stop_to_retry_start_s"] = figures.pop("retry_started") - stopped_at
    with capsys.disabled():
        print("\njournal kill figures:", json.dumps(figures, default=str))


@pytest.mark.slow
def test_sigint_leaves_the_stores_consistent_and_rerun_resumes(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = study_cmd(
        storage, tmp_path / "runs", *SPEC_ARGS, "--set", "study.n_trials=2", "--set", "space.epochs={low=4, high=5}"
    )
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    signal_when(proc.pid, lambda: running_trial_of(storage, None), signal.SIGINT, proc=proc)  # mid-trial, surely
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # seen once under load (MLflow's SQLite busy): say where it was
        proc.kill()
        pytest.fail(f"no exit within 60 s of SIGINT; its stderr ends:\n{proc.communicate()[1][-6000:]}")
    assert proc.returncode == 130, err[-1000:]
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert {r.info.status for r in runs if r.data.tags.get("rethink.kind") in ("spec", "arm")} == {"KILLED"}
    for arm in ARMS:
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=storage)
        assert not study.get_trials(states=(TrialState.RUNNING,))
    assert subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True).returncode == 0
    for arm in ARMS:
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=storage)
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2 + len(study.user_attrs["baselines"])
    assert_stores_agree(storage, "tiny")


def test_unreachable_database_is_a_clear_error_within_seconds(tracking_uri, tmp_path, capsys):
    from study.commands.cli import main

    start = time.time()
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    assert main(["study", TINY, "--storage", url, "--workdir", str(tmp_path / "runs")]) == 2
    assert time.time() - start < 10
    err = capsys.readouterr().err
    assert "cannot open Optuna storage postgresql://nobody@127.0.0.1" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("url", ["postgresql//host/db", "sqlite:/relative.db", "journal"])
def test_malformed_storage_urls(url):
    from study.plan.spec import SpecError

    with pytest.raises(SpecError, match="storage"):
        make_storage(url)


@pytest.mark.parametrize(
    "url,masked",
    [
        ("postgresql://alice:s3cret@db:5432/x", "postgresql://alice:***@db:5432/x"),
        (
            "postgresql://alice@db/x?password=s3cret&sslmode=require",
            "postgresql://alice@db/x?password=***&sslmode=require",
        ),
        ("postgresql://db/x?sslmode=require&PassWord=s3cret", "postgresql://db/x?sslmode=require&PassWord=***"),
        ("postgresql://db/x?sslpassword=s3cret", "postgresql://db/x?sslpassword=***"),
        ("http://bob:s3cret@tracking:5000", "http://bob:***@tracking:5000"),
        ("https://tracking/?token=s3cret", "https://tracking/?token=***"),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
    ],
)
def test_every_credential_form_is_masked(url, masked):
    from study.records.secrets import redact, scrub

    assert redact(url) == masked
    if "s3cret" in url:
        assert "s3cret" not in scrub(f"driver said: {url} failed for s3cret", url)


@pytest.mark.slow
def test_serve_binds_loopback_by_default(tmp_path):
    import psutil

    ports = free_port(), free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--mlflow-port",
            str(ports[0]),
            "--dashboard-port",
            str(ports[1]),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
            "--artifacts-destination",
            str(tmp_path / "a"),
            "--storage",
            f"sqlite:///{tmp_path / 'o.db'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{ports[0]}/health", proc)
        wait_http(f"http://127.0.0.1:{ports[1]}/api/studies", proc)
        listening = []
        for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
            try:
                listening += [c.laddr for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:  # a short-lived helper process
                continue
        assert {a.port for a in listening} >= set(ports)
        assert {a.ip for a in listening} == {"127.0.0.1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0


@pytest.mark.slow
def test_no_form_of_password_is_printed_stored_or_put_on_a_command_line(postgres, tracking_uri, tmp_path):
    """Both credential forms (user:pw@ and ?password=) in the storage URL, given through RETHINK_STORAGE,
    with two workers: no process's command line, no output, no MLflow param or tag, and no Optuna
    attribute holds either password; the masked URL is what is shown."""
    import psutil

    secrets = ("pw-userinfo-7f3a", "pw-query-91cb")
    url = new_database(postgres, "secrets").replace("postgres@", f"postgres:{secrets[0]}@")
    url += f"?password={secrets[1]}&sslmode=disable"
    cmd = [*CLI, "study", TINY, "--workdir", str(tmp_path / "runs"), "--workers", "2", "--no-report"]
    cmd += ["--set", "study.n_trials=1", "--set", "study.arms=['finetune']"]
    env = os.environ | {"RETHINK_STORAGE": url, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    leaked, seen_workers = [], 0
    while proc.poll() is None:
        for p in psutil.process_iter(["cmdline"]):
            line = " ".join(p.info["cmdline"] or [])
            seen_workers += "--worker" in line
            leaked += [line for s in secrets if s in line]
        time.sleep(0.2)
    out = proc.stdout.read()
    assert proc.returncode == 0, out[-3000:]
    assert seen_workers and not leaked
    assert not [s for s in secrets if s in out] and "postgres:***@" in out and "password=***" in out
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    recorded = [
        json.dumps([r.data.params, r.data.tags]) for r in client.search_runs([exp.experiment_id], max_results=1000)
    ]
    assert recorded and not [s for s in secrets for text in recorded if s in text]
    assert any("password=***" in text for text in recorded)  # the storage is recorded, masked
    storage = make_storage(url)
    study = optuna.load_study(study_name="tiny.finetune", storage=storage)
    attrs = json.dumps([study.user_attrs, [(t.user_attrs, t.system_attrs) for t in study.trials]])
    assert not [s for s in secrets if s in attrs]
