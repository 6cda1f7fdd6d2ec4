"""The final evaluation writes the same MLflow runs and metrics fused or not: one run per seed of each
chosen config (and per-seed base), with the same name, tags, params, metric keys and steps. `parallel` at
one thread per run gives the very numbers `off` gives at one thread (see test_fuse.py for why); `stacked`
computes the same function with other kernels, so its numbers are compared in tests/test_fuse.py.

The reports confirm on the search's own base only (`select.bases = 0`): a confirmation base is a lone run,
which trains at the process's thread count (one under `off`, two under `parallel`), and on some CPUs one
and two threads give other floats, hence other fine-tune picks and other final runs to compare."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from conftest import TINY, tiny_args
from rethink.arms import final_seeds
from study.commands.cli import main

TIMING = {"images_per_s"}  # measured, not computed
PER_RUN_TAGS = {"rethink.runtime", "rethink.base_run", "mlflow.parentRunId", "mlflow.runName"}


def _report(run_once, folder: Path, fuse: str, threads: int, monkeypatch) -> dict[str, dict]:
    """The tiny spec's final evaluation and report, from a fresh copy of its studies, in `folder`."""
    folder.mkdir()
    run_once("tiny-study", tiny_args, folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(folder)
    mlflow.set_tracking_uri(uri)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        storage = ["--storage", f"sqlite:///{folder / 'optuna.db'}", "--workdir", str(folder / "runs")]
        args = ["report", TINY, *storage, "--out", str(folder / "reports"), "--fuse", fuse, "--set", "select.bases=0"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(before)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    runs = {}
    for r in client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'final'"):
        assert r.info.status == "FINISHED"
        histories = {
            k: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)] for k in r.data.metrics
        }
        runs[r.info.run_name] = {
            "tags": {k: v for k, v in r.data.tags.items() if k not in PER_RUN_TAGS and not k.startswith("mlflow.")},
            "runtime": r.data.tags["rethink.runtime"],
            "params": r.data.params,
            "steps": {k: sorted(s for s, _ in h) for k, h in histories.items()},
            "values": {k: sorted(h) for k, h in histories.items() if k not in TIMING},
        }
    runs["table"] = pd.read_csv(folder / "reports" / "tiny" / "table.csv")
    return runs


@pytest.mark.slow
def test_fused_final_evaluation_writes_the_runs_and_metrics_the_unfused_one_writes(
    run_once, tracking_uri, tmp_path, monkeypatch
):
    off = _report(run_once, tmp_path / "off", "off", 1, monkeypatch)
    parallel = _report(run_once, tmp_path / "parallel", "parallel", 2, monkeypatch)
    stacked = _report(run_once, tmp_path / "stacked", "stacked", 2, monkeypatch)
    table = off.pop("table")
    assert parallel.pop("table").equals(table)  # the same test accuracies, hence the same report
    stacked_table = stacked.pop("table")
    assert list(stacked_table[["arm", "choice"]].itertuples(index=False)) == list(
        table[["arm", "choice"]].itertuples(index=False)
    )
    assert sorted(off) == sorted(parallel)
    seeds = tuple(f"seed{s}" for s in final_seeds(0, 2))
    assert sum(name.startswith("final:base:") for name in off) == 2  # one base per seed, and per choice:
    assert all(name.endswith(seeds) for name in off)  # each seed its own run
    for name, run in off.items():
        fused = parallel[name]
        assert fused["tags"] == run["tags"] and fused["params"] == run["params"]
        assert fused["steps"] == run["steps"]  # the same metrics, at the same epochs
        assert fused["values"] == run["values"]  # every logged number, bit for bit
        assert run["runtime"] == "cpu fp32 unfused"
        assert fused["runtime"].startswith("cpu fp32 fused:parallel×")
    # `stacked` computes with other kernels: its floats, hence a confirmation's pick, can differ from `off`'s on
    # some CPUs (a fine-tune best@E of its own beside best: seen on an AMD EPYC). Where it picks what `off` picks,
    # it writes the same run; every run it writes has the same shape: each seed its own, every epoch logged.
    same = [n for n in stacked if n in off and stacked[n]["params"] == off[n]["params"]]
    assert {n for n in off if n.startswith("final:base:")} <= set(same) and len(same) >= len(off) // 2
    for name in same:
        assert stacked[name]["tags"] == off[name]["tags"] and stacked[name]["steps"] == off[name]["steps"]
    for runs in (off, stacked):
        for name, run in runs.items():
            assert name.endswith(seeds) and {name.rsplit(":", 1)[0] + f":{s}" for s in seeds} <= set(runs)
            assert "test_acc" in run["steps"] and run["steps"]["train_loss"] == list(
                range(int(run["params"]["train.epochs"]))
            )
    bases = [stacked[n]["runtime"] for n in stacked if n.startswith("final:base:")]
    assert bases == ["cpu fp32 fused:stacked×2"] * 2  # the seeds of one config: one stacked computation
