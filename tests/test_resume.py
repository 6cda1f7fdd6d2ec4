"""A run killed after an epoch resumes from its snapshot and ends with exactly the weights and history of a
run never interrupted (rethink.resume), on CPU; the snapshot goes through torch.save / weights_only load."""

import io

import pytest
import torch

from rethink.data import load_dataset
from rethink.history import Callback
from rethink.models import build_model, default_spec
from rethink.resume import EpochCheckpoint, prior_epochs, valid_state
from rethink.splits import normalized, train_val_split
from rethink.train import TrainConfig, seed_everything, train

CONFIG = TrainConfig(epochs=4, batch_size=64, lr=0.05, augment="crop-flip", schedule="step", seed=3)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the process."""


class KillAfter(Callback):
    """Raises `error` after epoch `epoch` (Killed: SIGKILL; KeyboardInterrupt: Ctrl-C, which ends a run KILLED)."""

    def __init__(self, epoch: int, error: type[BaseException] = Killed):
        self.epoch, self.error = epoch, error

    def on_epoch_end(self, metrics, model) -> None:
        if metrics.epoch == self.epoch:
            raise self.error


def _split():
    ds = load_dataset("digits")
    return normalized(train_val_split(ds, 0.2, 0), "split", ds.name)


def _model():
    seed_everything(0)  # the model draws dropout-free; the global RNG still feeds the init
    return build_model(default_spec("vgg11", 1, 10, 8, width_scale=0.25))


def _through_bytes(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


ADAMW = TrainConfig(epochs=4, batch_size=64, lr=3e-3, augment="crop-flip", seed=3, optimizer="adamw", weight_decay=0.05)


MIXED = TrainConfig(epochs=4, batch_size=64, lr=0.05, augment="crop-flip", seed=3, mixup=0.8, cutmix=1.0)


@pytest.mark.parametrize("killed_after, config", [(0, CONFIG), (2, CONFIG), (3, CONFIG), (1, ADAMW), (2, MIXED)])
def test_a_killed_run_resumes_to_the_uninterrupted_result(killed_after, config):
    """AdamW's moments and step counts go through the snapshot as SGD's momentum does."""
    split = _split()
    straight = _model()
    reference = train(straight, split, config)

    saved: list[dict] = []
    digest = config.digest()
    model = _model()
    with pytest.raises(Killed):
        checkpoint = EpochCheckpoint(lambda s: saved.append(_through_bytes(s)), digest, every_s=0)
        train(model, split, config, [checkpoint, KillAfter(killed_after)])
    state = saved[-1]
    assert valid_state(state, digest) and state["epoch"] == killed_after and len(saved) == killed_after + 1
    assert not valid_state(state, "another recipe")

    resumed = _model()  # a fresh process: a fresh model, the snapshot loaded into it
    prior, seen = prior_epochs(state)
    more: list[dict] = []
    history = train(resumed, split, config, [EpochCheckpoint(more.append, digest, 0, prior, seen)], resume=state)
    assert [m.epoch for m in history.epochs] == [0, 1, 2, 3] and history.images_seen == reference.images_seen
    for a, b in zip(history.epochs, reference.epochs, strict=True):
        assert (a.lr, a.train_loss, a.eval_acc) == (b.lr, b.train_loss, b.eval_acc)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert len(more) == 3 - killed_after and (not more or len(more[-1]["epochs"]) == 4)


def test_snapshots_are_taken_only_after_enough_training_time():
    saved: list[dict] = []
    train(_model(), _split(), TrainConfig(epochs=3, batch_size=256), [EpochCheckpoint(saved.append, "d", 3600)])
    assert saved == []


def _snapshotted_trial_run(storage: str, after: int):
    """A running trial whose MLflow run holds a snapshot of at least `after` epochs: (study, trial, run, epochs)."""
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from study.records.snapshots import SNAPSHOT

    client = mlflow.MlflowClient()
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(states=(TrialState.RUNNING,)):
            run_id = t.user_attrs.get("mlflow_run_id")
            if run_id and SNAPSHOT in [f.path for f in client.list_artifacts(run_id, "checkpoint")]:
                state = torch.load(client.download_artifacts(run_id, SNAPSHOT), weights_only=True)
                if state["epoch"] + 1 >= after:
                    return s.study_name, t.number, run_id
    return None


@pytest.mark.slow
def test_a_trial_killed_mid_training_is_retried_from_its_last_snapshot(tracking_uri, tmp_path):
    """SIGKILL lands in a searched trial after a few snapshotted epochs; the next run of the spec retries the
    trial with the same parameters from the epoch after its snapshot (tagged in its run), and finishes it."""
    import os
    import signal
    import subprocess
    import time

    import mlflow
    import optuna

    from conftest import study_cmd

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    long = ["--set", "space.epochs={low=50, high=50}", "--set", "study.baselines=[]"]
    long += ["--set", "study.arms=['scratch-e']", "--set", "study.n_trials=1"]
    cmd = study_cmd(storage, tmp_path / "runs", "--no-report", *long)
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1", "RETHINK_SNAPSHOT_SECONDS": "0"}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline, found = time.time() + 240, None
    while found is None and time.time() < deadline and proc.poll() is None:
        found = _snapshotted_trial_run(storage, after=3)
        time.sleep(0.2)
    assert found is not None, proc.stderr.read()[-2000:] if proc.poll() is not None else "no snapshot in time"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    study_name, number, killed_run = found
    client = mlflow.MlflowClient()
    from study.records.snapshots import SNAPSHOT

    last = torch.load(client.download_artifacts(killed_run, SNAPSHOT), weights_only=True)["epoch"] + 1
    assert last >= 3

    rerun = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = optuna.load_study(study_name=study_name, storage=storage).trials
    retry = next(t for t in trials if t.user_attrs.get("retried_from") == number)
    assert retry.state.name == "COMPLETE" and retry.params == trials[number].params
    run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert run.data.tags["rethink.resumed_from"] == killed_run
    assert int(run.data.tags["rethink.resumed_after_epoch"]) >= last  # snapshots may have landed after the read
    assert run.data.metrics["epochs_run"] == 50 and run.info.status == "FINISHED"
    assert client.get_run(killed_run).info.status == "KILLED"
    assert f"resumed after epoch {run.data.tags['rethink.resumed_after_epoch']}" in rerun.stdout


def test_a_killed_final_run_resumes_in_the_next_attempt_to_the_uninterrupted_score(tracking_uri, monkeypatch):
    """train_pending (every final and confirmation run): an attempt stopped after epoch 2 leaves a KILLED
    run with its snapshot; the next attempt at the same run resumes from it (tagged) and scores what an
    uninterrupted run scores."""
    import mlflow

    from rethink.runtime import Runtime
    from rethink.splits import train_test
    from study.final.groups import Pending, train_pending
    from study.records.tracking import RunTree

    monkeypatch.setenv("RETHINK_SNAPSHOT_SECONDS", "0")
    ds = load_dataset("digits")
    split = normalized(train_test(ds), "split", ds.name)
    config = TrainConfig(epochs=5, batch_size=64, lr=0.05, augment="flip", schedule="cosine", seed=1)
    tree = RunTree("resume-final")
    root = tree.child(tree.client.create_run(tree.experiment_id).info.run_id, "final", "final-root", {})

    def pending(*callbacks) -> Pending:
        return Pending("seed 1", {"seed": 1}, {"lr": 0.05}, _model(), config, "seed 1", list(callbacks))

    def score(k, history):
        return {"test_acc": history.final.eval_acc}

    runtime = Runtime(device="cpu", fuse="off")
    (straight,), (reference,) = train_pending([pending()], split, tree, root, runtime, score, "straight")
    with pytest.raises(KeyboardInterrupt):
        train_pending([pending(KillAfter(2, KeyboardInterrupt))], split, tree, root, runtime, score, "first attempt")
    client = mlflow.MlflowClient()
    killed = client.search_runs([tree.experiment_id], "attributes.status = 'KILLED'")
    assert len(killed) == 1
    (resumed_id,), (history,) = train_pending([pending()], split, tree, root, runtime, score, "second attempt")
    run = client.get_run(resumed_id)
    assert run.data.tags["rethink.resumed_from"] == killed[0].info.run_id
    assert run.data.tags["rethink.resumed_after_epoch"] == "2" and run.info.status == "FINISHED"  # epoch 3 was lost
    assert [m.epoch for m in history.epochs] == [0, 1, 2, 3, 4]
    assert history.final.eval_acc == reference.final.eval_acc
    assert run.data.metrics["test_acc"] == client.get_run(straight).data.metrics["test_acc"]
