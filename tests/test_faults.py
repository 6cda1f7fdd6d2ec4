"""Bad inputs and faults, as an adversarial user would try them. Every refusal: the documented exit code,
one line that names the field, file or value, no traceback, and, read back from the real MLflow and
Optuna stores, nothing made (no run, no RUNNING trial): each is caught before any training."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import (
    TINY,
    act_when,
    assert_stores_agree,
    free_port,
    interruptible,
    signal_when,
    start_mlflow_server,
    stop_process_group,
    study_cmd,
)
from study.commands.cli import main

DIGITS_SHAPE = (40, 8, 8)


def _arrays(**over) -> dict[str, np.ndarray]:
    """A small valid dataset (4 classes, 8×8), with fields replaced by `over`."""
    rng = np.random.default_rng(0)
    a = {
        "x_train": rng.integers(0, 255, DIGITS_SHAPE, dtype=np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 255, (12, 8, 8), dtype=np.uint8),
        "y_test": np.arange(12) % 4,
    }
    return a | over


def _npz(tmp: Path, **over) -> str:
    path = tmp / "data.npz"
    np.savez(path, **_arrays(**over))
    return f"dataset=npz:{path}"


def _file(tmp: Path, name: str, content: bytes) -> Path:
    (tmp / name).write_bytes(content)
    return tmp / name


def _checkpoint(tmp: Path, change) -> Path:
    """A real checkpoint of the tiny VGG, altered by `change(payload)`, saved weights-only."""
    from rethink.checkpoint import save_checkpoint
    from rethink.models import build_model, default_spec

    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    path = save_checkpoint(tmp / "model.pt", build_model(spec), spec, meta={"digest": "x"})
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def _study(tmp: Path, *sets: str, extra: tuple[str, ...] = (), spec: str = TINY) -> list[str]:
    args = ["study", spec, "--storage", f"sqlite:///{tmp / 'optuna.db'}", "--workdir", str(tmp / "runs")]
    return [*args, *extra, *[x for s in sets for x in ("--set", s)]]


def _prune(path: Path) -> list[str]:
    return ["prune", "--checkpoint", str(path), "--method", "l1-norm", "--ratio", "0.5"]


def _set(payload, key, value):
    payload[key] = value


def _pickled(tmp: Path) -> Path:
    import pickle

    return _file(tmp, "evil.pt", pickle.dumps({"arch": os.system, "state_dict": {}}))


def _widths(payload, w):
    payload["arch"]["widths"] = [w] * len(payload["arch"]["widths"])


# (id, argv from the test's folder, exit code, what the one line must contain)
CASES = [
    ("unknown-field", lambda t: _study(t, "bogus=1"), 2, r"bogus: unknown field"),
    ("set-syntax", lambda t: _study(t, "study.n_trials"), 2, r"--set 'study.n_trials': expected KEY=VALUE"),
    ("spec-missing", lambda t: _study(t, spec="no-such-spec"), 2, r"spec not found: no-such-spec"),
    ("spec-not-toml", lambda t: _study(t, spec=str(_file(t, "s.toml", b"name = ["))), 2, r"not valid TOML"),
    ("unknown-model", lambda t: _study(t, "model=vgg99"), 2, r"model: unknown model 'vgg99'; valid names: .*vgg11"),
    ("unknown-method", lambda t: _study(t, "prune.method=magic"), 2, r"prune.method: unknown method 'magic'"),
    ("ratio-one", lambda t: _study(t, "prune.ratio=1.0"), 2, r"prune.ratio: Input should be less than 1"),
    ("no-trials", lambda t: _study(t, "study.n_trials=0"), 2, r"study.n_trials: Input should be greater than or"),
    ("negative-lr", lambda t: _study(t, "space.lr={low=-0.1, high=0.1, log=false}"), 2, r"lr.low must be > 0"),
    ("empty-lr", lambda t: _study(t, "space.lr={low=0.1, high=0.01}"), 2, r"space.lr: .*low must be below high"),
    (
        "baseline-0-epochs",
        lambda t: _study(t, "baselines.literature.epochs=0"),
        2,
        r"literature.epochs: .*>= 1|equal to 1",
    ),
    ("negative-seed", lambda t: _study(t, "seed=-1"), 2, r"seed: Input should be greater than or equal to 0"),
    ("negative-study-seed", lambda t: _study(t, "study.seed=-5"), 2, r"study.seed: Input should be greater"),
    ("batch-size-not-in-space", lambda t: _study(t, "space.batch_size=[32]"), 2, r"base.batch_size: 64 is not in"),
    ("bad-augment", lambda t: _study(t, "space.augment=['rotate']"), 2, r"space.augment.0: unknown augmentation"),
    ("storage-scheme", lambda t: [*_study(t), "--storage", "redis://x"], 2, r"unknown storage 'redis://x'"),
    ("journal-empty", lambda t: [*_study(t), "--storage", "journal:"], 2, r"the journal needs a file path"),
    ("journal-folder", lambda t: [*_study(t), "--storage", f"journal:{t}"], 2, r"is a folder; give a file in it"),
    ("workers-zero", lambda t: _study(t, extra=("--workers", "0")), 2, r"--workers must be >= 1, got 0"),
    ("workers-sqlite", lambda t: _study(t, extra=("--workers", "2")), 2, r"several workers need a journal"),
    ("worker-unprepared", lambda t: _study(t, extra=("--worker",)), 2, r"--worker: studies .* --prepare-only"),
    ("unknown-dataset", lambda t: _study(t, "dataset=mnist"), 2, r"unknown dataset 'mnist'; valid names"),
    ("npz-missing", lambda t: _study(t, f"dataset=npz:{t / 'no.npz'}"), 2, r"npz dataset file not found"),
    ("npz-key", lambda t: _study(t, _npz_without(t, "y_test")), 2, r"missing key"),
    ("npz-float", lambda t: _study(t, _npz(t, x_train=np.zeros(DIGITS_SHAPE))), 2, r"'x_train' has dtype float64"),
    ("npz-lengths", lambda t: _study(t, _npz(t, y_train=np.arange(39) % 4)), 2, r"40 images but 'y_train' has 39"),
    (
        "npz-non-square",
        lambda t: _study(t, _npz(t, x_train=np.zeros((40, 8, 6), np.uint8), x_test=np.zeros((12, 8, 6), np.uint8))),
        2,
        r"8×6; .*square",
    ),
    ("npz-negative-test", lambda t: _study(t, _npz(t, y_test=np.arange(12) % 4 - 1)), 2, r"'y_test' has negative"),
    ("npz-unseen-test", lambda t: _study(t, _npz(t, y_test=np.arange(12) % 5)), 2, r"'y_test' has label\(s\) \[4\]"),
    (
        "npz-sparse-labels",
        lambda t: _study(t, _npz(t, y_train=np.where(np.arange(40) % 2, 1_000_000, 0), y_test=np.zeros(12, int))),
        2,
        r"labels are not 0..1000000",
    ),
    (
        "npz-empty",
        lambda t: _study(t, _npz(t, x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, int))),
        2,
        r"'x_train' is empty",
    ),
    (
        "npz-class-too-small",
        lambda t: _study(t, _npz(t, y_train=np.r_[np.arange(39) % 3, 3], y_test=np.arange(12) % 4)),
        2,
        r"stratified validation split .* class 3 has 1 image",
    ),
    ("npz-not-zip", lambda t: _study(t, f"dataset=npz:{_file(t, 'x.npz', b'not a zip')}"), 2, r"not an npz"),
    ("npz-object", lambda t: _study(t, _npz(t, y_train=np.array([{}] * 40, dtype=object))), 2, r"not an npz of plain"),
    ("report-margin", lambda t: ["report", TINY, "--margin", "200"], 2, r"--margin 200.0: expected accuracy points"),
    (
        "report-unfinished",
        lambda t: ["report", TINY, "--storage", f"sqlite:///{t / 'o.db'}"],
        2,
        r"studies are unfinished",
    ),
    ("checkpoint-missing", lambda t: _prune(t / "none.pt"), 2, r"checkpoint not found: .*none.pt"),
    ("checkpoint-pickle", lambda t: _prune(_pickled(t)), 2, r"refused, not a weights-only checkpoint"),
    (
        "checkpoint-truncated",
        lambda t: _prune(_file(t, "cut.pt", _checkpoint(t, lambda p: None).read_bytes()[:500])),
        2,
        r"unreadable or truncated",
    ),
    (
        "checkpoint-non-tensor",
        lambda t: _prune(_checkpoint(t, lambda p: p["state_dict"].update(x=3))),
        2,
        r"non-tensor entries \(e.g. 'x'\)",
    ),
    (
        "checkpoint-wide",
        lambda t: _prune(_checkpoint(t, lambda p: _widths(p, 2048))),
        2,
        r"weights do not match arch spec vgg11 \[2048",
    ),
    (
        "checkpoint-1e9-classes",
        lambda t: _prune(_checkpoint(t, lambda p: p["arch"].update(num_classes=10**9))),
        2,
        r"shape mismatches=\['classifier",
    ),
    ("checkpoint-no-arch", lambda t: _prune(_checkpoint(t, lambda p: p.pop("arch"))), 2, r"not a rethink checkpoint"),
]


def _npz_without(tmp: Path, key: str) -> str:
    path = tmp / "data.npz"
    np.savez(path, **{k: v for k, v in _arrays().items() if k != key})
    return f"dataset=npz:{path}"


def assert_nothing_made(tmp: Path) -> None:
    """No MLflow run in any experiment, no Optuna trial, no checkpoint: refused before any training."""
    client = mlflow.MlflowClient()
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
    db = tmp / "optuna.db"
    if db.exists():
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            assert not optuna.load_study(study_name=s.study_name, storage=storage).trials
    assert not list((tmp / "runs").rglob("*.pt")) if (tmp / "runs").exists() else True


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name,argv,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_before_anything_runs(
    name, argv, code, message, tracking_uri, tmp_path, capsys
):
    args = argv(tmp_path)
    capsys.readouterr()
    assert main(args) == code
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"rethink {args[0]}: error: "), line
    assert re.search(message, line), line
    assert_nothing_made(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_refused(tracking_uri, tmp_path, capsys):
    assert main(_study(tmp_path, extra=("--device", "cuda"))) == 2
    assert "--device cuda: no CUDA device is available here; use --device cpu" in one_line_error(
        capsys.readouterr().err
    )
    assert_nothing_made(tmp_path)


def test_unreachable_tracking_server_is_reported_within_15_s(tracking_uri, tmp_path, capsys):
    start = time.monotonic()
    assert main([*_study(tmp_path), "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 3
    assert time.monotonic() - start < 15
    line = one_line_error(capsys.readouterr().err)
    assert re.search(r"MLflow tracking server http://127.0.0.1:\d+ does not answer", line), line
    start = time.monotonic()
    assert main(["best", "--spec", "tiny", "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 3
    assert time.monotonic() - start < 15
    assert not (tmp_path / "runs").exists()


def test_serve_refuses_a_taken_port(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(
            [
                "serve",
                "--mlflow-port",
                str(port),
                "--dashboard-port",
                str(free_port()),
                "--backend-store-uri",
                f"sqlite:///{tmp_path / 'm.db'}",
                "--storage",
                f"sqlite:///{tmp_path / 'o.db'}",
            ]
        )
    assert code == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"--mlflow-port {port}: 127.0.0.1:{port} is not free" in line


def test_a_replaced_cached_checkpoint_is_refused(tiny_run, tmp_path, capsys):
    """The pruned checkpoint is found by its digest; another file under that name is refused, not used."""
    tmp = tmp_path
    (pruned,) = (tmp / "runs").rglob("pruned-*.pt")
    base = pruned.with_name("model.pt")
    pruned.write_bytes(base.read_bytes())  # a valid checkpoint, but not the one the digest names
    assert main(["report", TINY, "--storage", f"sqlite:///{tmp / 'optuna.db'}", "--workdir", str(tmp / "runs")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"{pruned}: holds digest" in line and "delete it to make it again" in line
    client = mlflow.MlflowClient()
    assert not client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "attributes.status = 'RUNNING'"
    )


# Faults: real processes, signals and servers.


def _wait_for(predicate, timeout: float = 180, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (found := predicate()) is not None:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended early with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError("condition not met")


def _searched_trial_running(storage: str) -> tuple[str, int] | None:
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "baseline" not in t.user_attrs and "mlflow_run_id" in t.user_attrs:
                return s.study_name.split(".")[1], t.number
    return None


def _trial_running(storage: str, arm: str, number: int) -> bool | None:
    trial = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).trials[number]
    return True if trial.state == TrialState.RUNNING else None


def _env(tracking: str) -> dict[str, str]:
    return os.environ | {"MLFLOW_TRACKING_URI": tracking, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_processes_on_one_spec_one_is_refused_and_sigterm_ends_every_run_killed(tracking_uri, tmp_path):
    """Started together on one SQLite storage: one owns the spec, the other is refused before training,
    naming the owner, and never touches its live trial. SIGTERM then ends the owner's runs KILLED."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # 400-epoch trials (no baselines: theirs would lie outside such a space; pareto leaves the E picks missing)
    long = ["--set", "space.epochs={low=400, high=400}", "--set", "study.baselines=[]"]
    cmd = study_cmd(storage, tmp_path / "runs", "--no-report", *long)
    procs = [
        subprocess.Popen(cmd, env=_env(tracking_uri), cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    refused = _wait_for(lambda: next((p for p in procs if p.poll() is not None), None), timeout=120)
    owner = next(p for p in procs if p is not refused)
    err = refused.stderr.read()
    assert refused.returncode == 2, err
    line = one_line_error(err)
    assert f"spec 'tiny' on storage {storage} is in use by process {owner.pid}" in line
    arm, number = _wait_for(
        lambda: _searched_trial_running(storage), proc=owner
    )  # 400 epochs: a minute or more, so it outlives the late start below (SIGTERM ends it)
    late = subprocess.run(cmd, env=_env(tracking_uri), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert late.returncode == 2 and f"in use by process {owner.pid}" in one_line_error(late.stderr)
    live = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).trials[number]
    assert live.state == TrialState.RUNNING  # the refused process failed nothing
    running = partial(_trial_running, storage, arm, number)
    assert act_when(owner.pid, running, partial(os.kill, owner.pid, signal.SIGTERM), proc=owner)  # lands mid-trial
    assert owner.wait(timeout=60) == 143
    counts = assert_stores_agree(storage, "tiny")
    assert counts.get("RUNNING", 0) == 0 and counts["FAIL"] >= 1
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    kinds = {r.data.tags["rethink.kind"]: r.info.status for r in client.search_runs([exp.experiment_id])}
    assert kinds["spec"] == "KILLED" and kinds["arm"] == "KILLED"
    (root,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'spec'")
    assert "SIGTERM" in root.data.tags["failure_reason"]
    lost = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).trials[number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["lost"] is True


@pytest.mark.slow
def test_sigint_in_the_final_evaluation_ends_its_runs_killed(tiny_run, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "study.commands.cli",
        "report",
        TINY,
        "--storage",
        tiny_run,
        "--workdir",
        str(tmp_path / "runs"),
        "--fuse",
        "parallel",
    ]
    env = _env(os.environ["MLFLOW_TRACKING_URI"]) | {"OMP_NUM_THREADS": "2"}  # runs side by side
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL, text=True, preexec_fn=interruptible)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")

    def choices_in_training():  # the bases train as one group, then the chosen configs as another
        runs = client.search_runs(
            [exp.experiment_id], "tags.`rethink.kind` = 'final' and attributes.status = 'RUNNING'"
        )
        training = [r for r in runs if r.data.tags.get("rethink.role") != "base" and not r.data.metrics]
        return training or None  # a run's metrics are sent as its training ends: none yet, still training

    in_training = signal_when(proc.pid, choices_in_training, signal.SIGINT, proc=proc)
    assert proc.wait(timeout=60) == 130
    finals = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final'")
    bases = [r for r in finals if r.data.tags.get("rethink.role") == "base"]
    assert len(bases) == 2 and all(r.info.status == "FINISHED" for r in bases)
    killed = [r for r in finals if r.info.status == "KILLED"]
    assert {r.info.run_id for r in in_training} <= {r.info.run_id for r in killed}  # those in training at the signal
    assert killed and all("SIGINT" in r.data.tags["failure_reason"] for r in killed)
    assert {r.info.status for r in finals} <= {"FINISHED", "KILLED"}  # every run the group started ended
    assert all("fused:parallel" in r.data.tags["rethink.runtime"] for r in finals)
    (root,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'spec'")
    assert root.info.status == "KILLED"
    assert_stores_agree(tiny_run, "tiny")


@pytest.mark.slow
def test_a_tracking_server_that_dies_mid_trial_fails_it_cleanly_and_the_rerun_retries_it(tmp_path):
    backend, artifacts, port = f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", free_port()
    url, server = start_mlflow_server(backend, artifacts, port)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # one searched trial of 40 epochs: long enough that the moment below surely comes while it runs
    sets = ["--set", "space.epochs={low=40, high=40}", "--set", "study.arms=['finetune']", "--set", "study.n_trials=1"]
    sets += ["--set", "study.baselines=[]"]  # theirs would lie outside a 40-epoch space
    cmd = study_cmd(storage, tmp_path / "runs", "--tracking-uri", url, "--no-report", *sets)
    proc = subprocess.Popen(cmd, env=_env(url), cwd=tmp_path, stderr=subprocess.PIPE, text=True)

    def kill_server():
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

    # the server dies while the study process is frozen with its searched trial confirmed RUNNING
    arm, number = act_when(proc.pid, lambda: _searched_trial_running(storage), kill_server, proc=proc)
    died = time.monotonic()
    assert proc.wait(timeout=120) == 3
    stopped_after = time.monotonic() - died
    err = proc.stderr.read()
    assert "Traceback" not in err, err[-3000:]
    assert f"the MLflow tracking server {url} stopped answering" in err.strip().splitlines()[-1]
    lost = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).trials[number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["lost"] is True

    url, server = start_mlflow_server(backend, artifacts, port)  # the server comes back
    try:
        rerun = subprocess.run(cmd, env=_env(url), cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        client = mlflow.MlflowClient(url)
        assert_stores_agree(storage, "tiny", client)
        study = optuna.load_study(study_name=f"tiny.{arm}", storage=storage)
        (retry,) = [t for t in study.trials if t.user_attrs.get("retried_from") == number]
        assert retry.state == TrialState.COMPLETE and retry.params == lost.params
        run = client.get_run(lost.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and "closed on a later run" in run.data.tags["failure_reason"]
    finally:
        stop_process_group(server)
    assert stopped_after < 30, stopped_after
    print(f"tracking server killed mid-trial: the study stopped {stopped_after:.1f} s later")
