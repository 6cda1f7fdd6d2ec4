"""A study's baselines trained as one group (study/trial_group.py) leave Optuna's sampler and the budget
exact: the same trials, with the same parameters and the same results, as trained one at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import assert_stores_agree, study_args
from study.commands.cli import main

ARMS = ("finetune", "scratch")


def _study(folder: Path, fuse: str, threads: int, monkeypatch) -> dict[str, list]:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(folder)
    import mlflow

    mlflow.set_tracking_uri(uri)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert main([*study_args(storage, folder / "runs", "--no-report", "--fuse", fuse)]) == 0
    finally:
        torch.set_num_threads(before)
    assert_stores_agree(storage, "tiny", mlflow.MlflowClient(uri))
    client = mlflow.MlflowClient(uri)
    out = {}
    for arm in ARMS:
        trials = optuna.load_study(study_name=f"tiny.{arm}", storage=storage).get_trials()
        assert all(t.state == TrialState.COMPLETE for t in trials)
        runtimes = [client.get_run(t.user_attrs["mlflow_run_id"]).data.tags["rethink.runtime"] for t in trials]
        out[arm] = [
            (t.number, t.user_attrs.get("baseline"), t.params, t.values, r)
            for t, r in zip(trials, runtimes, strict=True)
        ]
    return out


@pytest.mark.slow
def test_baselines_trained_together_leave_the_sampler_and_the_budget_exact(tracking_uri, tmp_path, monkeypatch):
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off = _study(tmp_path / "off", "off", 1, monkeypatch)
    shutil.copytree(tmp_path / "off" / "runs", tmp_path / "on" / "runs")  # the same base and pruned model
    # One thread: the group's lane runs one baseline at a time, with the numerics of `off`; what differs is
    # only that the baselines were asked, trained and told as one group before the searched trials.
    on = _study(tmp_path / "on", "parallel", 1, monkeypatch)
    for arm in ARMS:
        baselines = [t for t in on[arm] if t[1]]
        assert len(baselines) >= 2 and {t[4] for t in baselines} == {f"cpu fp32 fused:parallel×{len(baselines)}"}
        assert {t[4] for t in on[arm] if not t[1]} == {"cpu fp32"}  # searched trials: one at a time
        assert [t[:4] for t in on[arm]] == [t[:4] for t in off[arm]]  # same trials, parameters and values
        assert {t[4] for t in off[arm]} == {"cpu fp32"}
