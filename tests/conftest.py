from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _memory_back_to_the_system(request):
    """After each slow or smoke test (whole studies in this process), the freed heap goes back to the system:
    glibc keeps a process's high-water mark (measured: a smoke worker grew to 12 GB over the sweep; each spec
    alone peaks at 6 GB and trims to 1 GB)."""
    yield
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("smoke"):
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.fixture(autouse=True)
def _threads_as_they_were():
    """A test that sets torch's thread count (to fuse runs side by side, or to time one thread) leaves the
    next test the count it found: under `-n 2` with OMP_NUM_THREADS=1 that is one thread, in a plain run
    the machine's cores."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


STUDY_THREADS = 2  # the session's template studies run on at least two threads (a 2-core machine's default)
# whatever OMP_NUM_THREADS says, so their baselines fuse side by side (`parallel`) under `-n 2` as in a plain run


REPO = Path(__file__).resolve().parents[1]
# The real CIFAR-10 subset beside the checkout: CI and the project's machines have it, a user's clone does not.
# Tests reach it only through the `cifar5k` fixture (which skips, with the reason, when it is absent);
# RETHINK_CIFAR5K points elsewhere, so CI also runs those tests with the file hidden.
CIFAR5K = Path(os.environ.get("RETHINK_CIFAR5K", REPO.parent / "shared" / "data" / "cifar10-5k.npz"))

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# Timed machine rates (study/plan/rate.py) go to a folder of this test session, never to the user's ~/.cache
os.environ["RETHINK_CACHE_DIR"] = tempfile.mkdtemp(prefix="rethink-cache-")
atexit.register(shutil.rmtree, os.environ["RETHINK_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def digits():
    from rethink.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def cifar5k() -> Path:
    """The shared CIFAR-10 subset (5,085 train, 1,017 test images); the test skips when it is absent."""
    if not CIFAR5K.is_file():
        pytest.skip(f"{CIFAR5K} is absent (only CI and the project's machines have ../shared/data)")
    return CIFAR5K


def pytest_collection_modifyitems(items):
    for item in items:  # `pytest -m shared_data` selects every test that reads the shared file
        if "cifar5k" in getattr(item, "fixturenames", ()):
            item.add_marker("shared_data")


@pytest.fixture(scope="session")
def cifar_made(tmp_path_factory) -> Path:
    """A small npz in cifar10-5k's format (uint8 N×32×32×3, 10 classes, label names) that the test makes. Named
    cifar10-*.npz, it takes CIFAR-10's fixed normalization constants as the shared subset does."""
    import numpy as np

    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("cifar-made") / "cifar10-made.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 200, (100, 32, 32, 3), dtype=np.uint8),  # mean about 0.39, unlike the constants
        y_train=np.arange(100) % 10,
        x_test=rng.integers(0, 200, (20, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(20) % 10,
        label_names=np.array(
            ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        ),
    )
    return path


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema made once (the migrations take seconds); tests get copies."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch, empty_mlflow_db):
    """A real MLflow SQLite tracking store in a temporary folder (a fresh copy of an empty store)."""
    import shutil

    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc=None, timeout: float = 60) -> bytes:
    """GET `url` once the server answers; fails early if its process exits."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


def start_mlflow_server(backend: str, artifacts: Path, port: int | None = None):
    """A real `mlflow server` on 127.0.0.1 in its own process group; returns (url, process)."""
    import subprocess
    import sys

    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner: a faster start
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc)
    return url, proc


def stop_process_group(proc) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


TINY = str(REPO / "tests" / "tiny.toml")


def study_args(storage: str, workdir: Path, *extra: str, spec: str = TINY) -> list[str]:
    """`rethink study` arguments for the tiny spec (pass to main, or after `python -m study.commands.cli`)."""
    return ["study", spec, "--storage", storage, "--workdir", str(workdir), *extra]


def study_cmd(storage: str, workdir: Path, *extra: str) -> list[str]:
    """The same as a subprocess command line."""
    import sys

    return [sys.executable, "-m", "study.commands.cli", *study_args(storage, workdir, *extra)]


@pytest.fixture(scope="session")
def run_once(tmp_path_factory):
    """Run `rethink ARGS` once per session in a folder of its own (its MLflow and Optuna databases, its
    workdir); each test then gets a copy, so tests that add to the stores do not see each other."""
    import shutil

    made: dict[str, Path] = {}

    def make(key: str, args_for) -> Path:
        if key not in made:
            folder = tmp_path_factory.mktemp(key)
            import mlflow

            from study.commands.cli import main

            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
                for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
                    mp.delenv(var, raising=False)
                mp.chdir(folder)
                before = mlflow.get_tracking_uri()
                mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
                import torch

                threads = torch.get_num_threads()
                torch.set_num_threads(max(STUDY_THREADS, threads))
                try:
                    assert main(args_for(folder)) == 0
                finally:
                    torch.set_num_threads(threads)
                mlflow.set_tracking_uri(before)  # the calling test's store, not the template's
            made[key] = folder
        return made[key]

    def copy(key: str, args_for, into: Path) -> None:
        shutil.copytree(make(key, args_for), into, dirs_exist_ok=True)

    return copy


def tiny_args(folder: Path) -> list[str]:
    """The tiny spec's studies, no report, with their stores in `folder`."""
    return study_args(f"sqlite:///{folder / 'optuna.db'}", folder / "runs", "--no-report")


@pytest.fixture
def tiny_run(run_once, tracking_uri, tmp_path):
    """The tiny spec's studies (no report), made once per session; a copy in this test's folder."""
    run_once("tiny-study", tiny_args, tmp_path)
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def assert_stores_agree(storage: str, experiment: str, client=None) -> dict[str, int]:
    """Optuna and MLflow agree trial by trial: every trial that started (not WAITING) has exactly one run,
    ended
    the way the trial ended (COMPLETE: FINISHED; PRUNED: KILLED; FAIL: FAILED or KILLED), and no run of
    any kind is RUNNING. Returns the trial states counted, for the test's own checks."""
    import mlflow
    import optuna

    client = client or mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    expected = {"COMPLETE": {"FINISHED"}, "PRUNED": {"KILLED"}, "FAIL": {"FAILED", "KILLED"}}
    counts: dict[str, int] = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        trial_runs = {}
        for r in runs:
            if (
                r.data.tags.get("rethink.kind") == "trial"
                and r.data.tags.get("optuna.study_name") == summary.study_name
            ):
                number = int(r.data.tags["optuna.trial_number"])
                assert number not in trial_runs, f"{summary.study_name} trial {number} has two MLflow runs"
                trial_runs[number] = r
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        for t in trials:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
            run = trial_runs.pop(t.number, None)
            if run is None:
                assert t.state.name in ("FAIL", "WAITING"), (
                    f"{summary.study_name} trial {t.number} ({t.state.name}) has no run"
                )
                continue
            assert run.info.status in expected[t.state.name], (summary.study_name, t.number, t.state, run.info.status)
            assert t.user_attrs.get("mlflow_run_id", run.info.run_id) == run.info.run_id
        assert not trial_runs, f"MLflow trial runs without an Optuna trial: {sorted(trial_runs)}"
    return counts


def _all_threads_stopped(pid: int) -> bool:
    """Every thread of `pid` is stopped (or the process is gone), read from /proc."""
    try:
        stats = [(task / "stat").read_text() for task in Path(f"/proc/{pid}/task").iterdir()]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return all(s.rsplit(")", 1)[1].split()[0] in "TtZX" for s in stats)


def _probe_quietly(probe):
    """What `probe()` finds, or None where the stores cannot be read right now (e.g. a frozen writer's lock)."""
    try:
        return probe()
    except Exception:
        return None


def while_frozen(pid: int, probe, action):
    """Freeze `pid` (SIGSTOP), and if `probe()` still finds what the test waits for, do `action()` while
    nothing in the process can move, so the state `probe` saw is the state `action` meets; thaw it (SIGCONT)
    after. Returns what `probe` found, or None (nothing done). A signal sent by `action` is delivered on thaw."""
    import contextlib
    import signal
    import time

    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.time() + 10
        while not _all_threads_stopped(pid) and time.time() < deadline:
            time.sleep(0.005)
        found = _probe_quietly(probe)
        if found is not None:
            action()
        return found
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def act_when(pid: int, probe, action, timeout: float = 180, proc=None):
    """Wait until `probe()` finds the moment (a trial running, say), then do `action()` with the process
    frozen on that moment (see while_frozen). Kill and signal tests choose their moment this way, so their
    outcome never depends on how fast this machine is. Returns what the confirming probe found."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read()[-2000:] if getattr(proc, "stderr", None) else ""
            raise AssertionError(f"the process ended with {proc.returncode} before the moment came: {err}")
        if _probe_quietly(probe) is not None and (found := while_frozen(pid, probe, action)) is not None:
            return found
        time.sleep(0.2)
    raise TimeoutError("the moment never came")


@pytest.fixture
def ctrl_c_handled():
    """Python's own Ctrl-C handler in this process for the test (`_thread.interrupt_main` does nothing where
    SIGINT came in ignored, as in a shell's background job); the disposition found is restored after."""
    import signal

    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)


def interruptible():
    """`preexec_fn` for a child that a test will SIGINT: a shell starts background jobs with SIGINT ignored,
    the child would inherit that, and Python then installs no KeyboardInterrupt handler at all; reset it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_when(pid: int, probe, sig: int, timeout: float = 180, proc=None):
    """Send `sig` to `pid` at a moment `probe()` finds, with the process frozen on it (see act_when)."""
    return act_when(pid, probe, lambda: os.kill(pid, sig), timeout, proc)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:] or [None]
    return found if isinstance(found, str) else found[0]


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), run as the postgres user when root."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL server binaries not found")
    base = Path(tempfile.mkdtemp(prefix="rethink-pg-"))  # not under pytest's root-only (0700) folder
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "--auth=trust", "-U", "postgres"], check=True, capture_output=True
    )
    port = free_port()
    opts = f"-h 127.0.0.1 -p {port} -k {sock} -c max_connections=200"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    yield f"postgresql://postgres@127.0.0.1:{port}"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def new_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as con:
        con.execute(f"create database {name}")
    return f"{server}/{name}"


def running_trial(storage_url: str, study_names, accept=lambda t: True):
    """(study name, trial) of the first RUNNING trial, its MLflow run made, that `accept(trial)` takes; or None."""
    import optuna
    from optuna.trial import TrialState

    from study.records.storage import make_storage

    storage = make_storage(storage_url)
    for name in study_names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "mlflow_run_id" in t.user_attrs and accept(t):
                return name, t
    return None
