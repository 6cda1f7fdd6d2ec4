"""Per-epoch MLflow logging: batched, and nothing lost when training stops early or fails."""

import mlflow
import pytest
import torch

from rethink.models import build_model, default_spec
from rethink.splits import train_val_split
from rethink.train import Callback, NonFiniteLoss, TrainConfig, seed_everything, train
from study.records.tracking import MlflowEpochLogger


class _Peek(Callback):
    """Counts the val_acc points MLflow holds at each epoch's end (after the logger's turn)."""

    def __init__(self, client, run_id):
        self.client, self.run_id, self.seen = client, run_id, []

    def on_epoch_end(self, metrics, model):
        self.seen.append(len(self.client.get_metric_history(self.run_id, "val_acc")))


class _PoisonAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, metrics, model):
        if metrics.epoch == self.epoch:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))


def _train(digits, run_id, flush_s, *extra):
    client = mlflow.MlflowClient()
    peek = _Peek(client, run_id)
    seed_everything(0)
    model = build_model(default_spec("vgg11", 1, 10, 8, 0.25))
    split = train_val_split(digits, 0.2, seed=0)
    config = TrainConfig(epochs=4, lr=0.05, augment="none")
    train(model, split, config, [MlflowEpochLogger(run_id, "val", flush_s=flush_s), peek, *extra])
    return peek.seen, [(m.step, m.value) for m in client.get_metric_history(run_id, "val_acc")]


@pytest.fixture
def new_run(tracking_uri):
    client = mlflow.MlflowClient()
    exp = client.create_experiment("logging")
    return lambda: client.create_run(exp).info.run_id


def test_epochs_are_buffered_then_logged_in_one_batch(digits, new_run):
    seen, history = _train(digits, new_run(), 3600.0)
    assert seen == [0, 0, 0, 0]  # nothing sent while training
    assert [step for step, _ in history] == [0, 1, 2, 3]
    assert all(0.0 <= acc <= 1.0 for _, acc in history)


def test_without_buffering_every_epoch_is_visible_at_once(digits, new_run):
    seen, history = _train(digits, new_run(), 0.0)
    assert seen == [1, 2, 3, 4]
    assert len(history) == 4


def test_a_failed_run_keeps_its_buffered_epochs(digits, new_run):
    run_id = new_run()
    with pytest.raises(NonFiniteLoss, match="epoch 2"):
        _train(digits, run_id, 3600.0, _PoisonAfter(1))
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_acc")
    assert [m.step for m in history] == [0, 1]


def test_finish_sends_held_epochs_past_the_batch_limit(new_run):
    from study.records.tracking import RunTree

    run_id = new_run()
    tree = RunTree("logging")
    held = [mlflow.entities.Metric("train_loss", 1.0 / (i + 1), 0, i) for i in range(1500)]
    tree.finish(run_id, "FINISHED", {"val_acc": 0.5}, {"optuna.state": "COMPLETE"}, step=1500, pending=held)
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == list(range(1500))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["val_acc"] == 0.5
    assert run.data.tags["optuna.state"] == "COMPLETE"


def test_recovery_ends_the_run_of_a_trial_killed_before_it_was_linked(tracking_uri, tmp_path):
    """A process killed between creating a trial's run and recording its id leaves no RUNNING run behind."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from study.records.tracking import RunTree
    from study.search.reconcile import recover_interrupted

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s.scratch-e")
    trial = study.ask({"lr": FloatDistribution(0.01, 0.1, log=True)})
    tree = RunTree("s")
    root = tree.root("spec s", {"rethink.spec": "s"})
    tags = {"optuna.study_name": study.study_name, "optuna.trial_number": trial.number}
    orphan = tree.child(root, "trial 0", "trial", tags, reuse=False)  # no mlflow_run_id user attribute yet

    assert recover_interrupted(study, tree) == 1
    run = mlflow.MlflowClient().get_run(orphan)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags["failure_reason"]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["fixed_params"] == trials[0].params  # the same parameters, retried


def test_recovery_leaves_a_trial_whose_owner_is_alive(tracking_uri, tmp_path):
    """Only a provably dead owner's trial is recovered: a RUNNING trial of a live process on this host is
    left alone; once that process is gone, the trial is failed and retried."""
    import socket
    import subprocess
    import sys

    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from study.records.tracking import RunTree
    from study.search.reconcile import recover_interrupted

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s.finetune")
    trial = study.ask({"lr": FloatDistribution(0.01, 0.1, log=True)})
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    trial.set_user_attr("worker_pid", owner.pid)
    trial.set_user_attr("worker_host", socket.gethostname())
    tree = RunTree("s")
    assert recover_interrupted(study, tree) == 0
    assert study.get_trials()[0].state == TrialState.RUNNING
    owner.kill()
    owner.wait()
    assert recover_interrupted(study, tree) == 1
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials()[0].user_attrs["lost"] is True
