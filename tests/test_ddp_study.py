"""`rethink study --gpus-per-trial 2`: every training run of the study trains on two processes (gloo on this
CPU; DistributedDataParallel over two GPUs on CUDA), is recorded as such, the stores agree, and no follower
process outlives the command."""

import multiprocessing

import mlflow
import pytest
import torch.distributed as dist

from conftest import assert_stores_agree, study_args
from rethink import team
from study.commands.cli import main


@pytest.mark.slow  # a whole study on a team (about 12 s): the default suite keeps the run-level DDP test
def test_every_training_run_of_a_study_trains_on_the_processes_asked_for(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    small = ("--set", "study.arms=['scratch-e']", "--set", "study.n_trials=1", "--set", 'study.baselines=["paper"]')
    assert (
        main(study_args(storage, tmp_path / "runs", "--gpus-per-trial", "2", "--device", "cpu", *small, "--no-report"))
        == 0
    )
    counts = assert_stores_agree(storage, "tiny")
    assert counts == {"COMPLETE": 2}  # the searched trial and the paper baseline
    runs = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("tiny").experiment_id], max_results=1000)
    trained = [r for r in runs if r.data.tags.get("rethink.kind") in ("base", "trial")]
    assert {r.data.tags["rethink.kind"] for r in trained} == {"base", "trial"}
    assert {r.data.tags["rethink.runtime"] for r in trained} == {"cpu fp32 ddp×2"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert team._team is None and not dist.is_initialized() and not multiprocessing.active_children()


def test_a_process_count_that_cannot_run_is_refused_before_training(tracking_uri, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(study_args(storage, tmp_path / "runs", "--gpus-per-trial", "0", "--device", "cpu")) == 2
    assert "--gpus-per-trial 0" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(study_args(storage, tmp_path / "runs", "--gpus-per-trial", "2", "--workers", "2")) == 2
    assert "--workers 2 with --gpus-per-trial 2" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
