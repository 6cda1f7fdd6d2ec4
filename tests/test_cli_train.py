import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import REPO
from rethink.checkpoint import load_checkpoint
from study.commands.cli import main

ARGS = ["train", "--model", "vgg11", "--width-scale", "0.25", "--lr", "0.05", "--augment", "none"]


def test_train_records_one_complete_run(tracking_uri, tmp_path):
    assert main(ARGS + ["--epochs", "4", "--experiment", "t"]) == 0
    runs = mlflow.search_runs(experiment_names=["t"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.05" and run.data.params["dataset"] == "digits"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert run.data.metrics["final_val_acc"] == history[-1].value > 0.5
    assert run.inputs.dataset_inputs[0].dataset.name == "digits"
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="checkpoint", dst_path=str(tmp_path / "dl")
    )
    model, ckpt = load_checkpoint(Path(local) / "model.pt")
    assert ckpt.spec.model == "vgg11" and ckpt.spec.in_channels == 1


def test_runtime_options_change_how_not_what_and_are_recorded(tracking_uri):
    fast = ["--bf16", "on", "--channels-last", "on", "--epochs", "3"]
    assert main(ARGS + fast + ["--experiment", "rt"]) == 0
    (run,) = mlflow.search_runs(experiment_names=["rt"], output_format="list")
    assert run.data.tags["rethink.runtime"] == "cpu bf16 channels_last"
    assert run.data.metrics["final_val_acc"] > 0.5


def test_runtime_options_round_trip_to_worker_command_lines():
    import argparse

    from study.commands.options import add_runtime_args, runtime_argv, runtime_from_args

    p = argparse.ArgumentParser()
    add_runtime_args(p)
    for argv in ([], ["--device", "cpu", "--bf16", "on", "--channels-last", "off", "--compile", "on"]):
        runtime = runtime_from_args(p.parse_args(argv))
        assert runtime_from_args(p.parse_args(list(runtime_argv(runtime)))) == runtime
    assert runtime_from_args(p.parse_args(["--bf16", "off"])).bf16 is False


def test_nan_loss_ends_run_failed_with_reason(tracking_uri):
    assert main(ARGS + ["--epochs", "2", "--lr", "1e6", "--experiment", "nan"]) == 1
    (run,) = mlflow.search_runs(experiment_names=["nan"], output_format="list")
    assert run.info.status == "FAILED"
    assert "nan" in run.data.tags["failure_reason"]


@pytest.mark.parametrize(
    "flag, value, expect",
    [("--dataset", "mnist", "valid names"), ("--model", "alexnet", "valid names"), ("--lr", "-1", "lr=-1")],
)
def test_bad_input_is_a_clear_error_before_any_run(tracking_uri, capsys, flag, value, expect):
    assert main(ARGS + [flag, value, "--experiment", "bad"]) == 2
    assert expect in capsys.readouterr().err
    assert mlflow.get_experiment_by_name("bad") is None


@pytest.mark.slow
def test_mlflow_run_main_makes_the_project_run_the_root(tmp_path):
    """`mlflow run . --env-manager local`: the spec's runs hang under the project run, none hijacked."""
    mlflow_bin = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    env = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    }
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(var, None)
    spec = tmp_path / "tiny.toml"  # the tiny spec, lighter: one searched trial per study, one final seed
    text = (REPO / "tests" / "tiny.toml").read_text().replace("n_trials = 2", "n_trials = 1")
    spec.write_text(text.replace("[final]\nseeds = 2", "[final]\nseeds = 1"))
    proc = subprocess.run(
        [
            mlflow_bin,
            "run",
            str(REPO),
            "--env-manager",
            "local",
            "-P",
            f"spec={spec}",
            "-P",
            f"storage=sqlite:///{tmp_path / 'optuna.db'}",
            "-P",
            f"workdir={tmp_path / 'runs'}",  # mlflow run works in the project folder: keep outputs out of it
            "-P",
            f"report_dir={tmp_path / 'reports'}",
            "--experiment-name",
            "tiny",  # the README's command 1 names the experiment after the spec
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "reports" / "tiny" / "report.md").is_file() and (tmp_path / "runs" / "tiny").is_dir()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    roots = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(roots) == 1 and roots[0].data.tags.get("mlflow.project.entryPoint") == "main"
    root = roots[0]
    assert root.info.status == "FINISHED" and root.data.tags["rethink.spec"] == "tiny"
    assert root.info.run_name == "spec tiny"  # not MLflow's random name
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    by_kind = {}
    for r in runs:
        by_kind.setdefault(r.data.tags.get("rethink.kind"), []).append(r)
    assert {r.data.tags["mlflow.parentRunId"] for k in ("base", "prune", "arm") for r in by_kind[k]} == {
        root.info.run_id
    }
    arm_ids = {r.info.run_id for r in by_kind["arm"]}
    assert (
        len(by_kind["trial"]) == 2 * 1 + 5 and {r.data.tags["mlflow.parentRunId"] for r in by_kind["trial"]} == arm_ids
    )
    others = [r for k, rs in by_kind.items() if k not in ("spec", "trial", "confirm") for r in rs]
    assert {"final", "report"} <= set(by_kind) and {r.data.tags["mlflow.parentRunId"] for r in others} == {
        root.info.run_id
    }
    assert {r.data.tags["mlflow.parentRunId"] for r in by_kind.get("confirm", [])} <= arm_ids  # under their arms
    from study.records.query import best_configs

    assert set(best_configs("tiny")["study"]) == {r.data.tags["optuna.study_name"] for r in by_kind["arm"]}


def test_prune_command_records_reductions(tracking_uri, tmp_path, capsys):
    assert main(ARGS + ["--epochs", "1", "--experiment", "p", "--out", str(tmp_path / "runs")]) == 0
    (ckpt,) = (tmp_path / "runs").glob("*/model.pt")
    assert (ckpt.parent / "init.pt").exists()
    capsys.readouterr()
    out = tmp_path / "pruned.pt"
    assert (
        main(
            [
                "prune",
                "--checkpoint",
                str(ckpt),
                "--method",
                "l1-norm",
                "--ratio",
                "0.5",
                "--out",
                str(out),
                "--experiment",
                "p",
            ]
        )
        == 0
    )
    _, pruned = load_checkpoint(out)
    base, base_ckpt = load_checkpoint(ckpt)
    assert all(w == max(1, int(b * 0.5)) for w, b in zip(pruned.spec.widths, base_ckpt.spec.widths, strict=True))
    runs = {r.data.tags["rethink.kind"]: r for r in mlflow.search_runs(experiment_names=["p"], output_format="list")}
    metrics = runs["prune"].data.metrics
    assert metrics["flops_after"] < metrics["flops_before"]
    assert metrics["flops_reduction"] == pytest.approx(1 - metrics["flops_after"] / metrics["flops_before"])
    assert metrics["scratch_b_epochs"] > 1
    assert runs["prune"].data.params["prune.method"] == "l1-norm"


def test_prune_command_refuses_bad_variant(tracking_uri, tmp_path, capsys):
    assert main(ARGS + ["--epochs", "1", "--experiment", "p", "--out", str(tmp_path / "runs")]) == 0
    (ckpt,) = (tmp_path / "runs").glob("*/model.pt")
    assert main(["prune", "--checkpoint", str(ckpt), "--method", "l1-norm", "--variant", "resnet56-a"]) == 2
    assert "defined for resnet56, not vgg11" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["best", "--spec", "no-such-spec"], "no runs of spec 'no-such-spec'"),
        (ARGS + ["--widths", "8,x"], "--widths must be comma-separated integers"),
        (["study", "quick", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_user_errors_are_messages_not_tracebacks(tracking_uri, capsys, argv, expect):
    assert main(argv) == 2
    assert expect in capsys.readouterr().err


def test_thinet_calibration_is_normalized_as_the_checkpoint_was_trained(cifar_made):
    """`rethink prune` reads `normalize` from the checkpoint's meta (rethink train records it)."""
    import numpy as np

    from rethink.data import load_dataset
    from rethink.splits import train_val_split
    from study.commands.prune import calibration_images

    x = calibration_images(f"npz:{cifar_made}", "data", 4, 0, "liu2019")
    raw = train_val_split(load_dataset(f"npz:{cifar_made}"), 0.1, 0).x_train[:4, 0] / 255.0
    np.testing.assert_allclose(x[:, 0].numpy(), (raw - 0.4914) / 0.2023, atol=1e-5)
    assert not np.allclose(calibration_images(f"npz:{cifar_made}", "data", 4, 0)[:, 0].numpy(), x[:, 0].numpy())
