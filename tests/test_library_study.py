"""A study on a library model end to end (timm's tiny test ResNet, DepGraph with a gradient criterion ranked
globally, the random-selection control, the uniform architecture): the pruned architecture is a JSON record in
the prune run, and the scratch and control runs train the architecture rebuilt from it."""

import json
from pathlib import Path

import mlflow
import pytest
import torch

pytest.importorskip("timm", reason="the 'models' extra (timm, torch-pruning) is not installed")
pytest.importorskip("torch_pruning", reason="the 'models' extra (timm, torch-pruning) is not installed")

from conftest import TINY, assert_stores_agree, study_args  # noqa: E402
from rethink.flops import param_count  # noqa: E402
from rethink.models import ArchSpec, build_model  # noqa: E402
from study.commands.cli import main  # noqa: E402
from study.plan.load import load_spec  # noqa: E402
from study.plan.spec import SpecError  # noqa: E402

LIBRARY = [
    "model='timm:test_resnet'",
    "width_scale=1.0",
    "prune.method='depgraph'",
    "prune.criterion='taylor'",
    "prune.scope='global'",
    "prune.max_ratio=0.8",
    "study.arms=['finetune', 'scratch-e', 'scratch-b', 'finetune-random', 'uniform']",
    "study.n_trials=1",
    "final.seeds=2",
    "select.top_k=1",
    "select.seeds=0",  # the layout's path under test: no confirmation, the paper baseline alone
    "study.baselines=['paper']",
    "space.epochs={ low = 1, high = 16 }",
]


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def test_a_library_model_study_records_its_pruned_layout_and_rebuilds_it_for_scratch_and_uniform(
    tracking_uri, tmp_path
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = study_args(storage, tmp_path / "runs", "--no-report", *_sets(LIBRARY))
    assert main(args) == 0
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    prune_run = next(r for r in runs if r.data.tags.get("rethink.kind") == "prune")
    path = client.download_artifacts(prune_run.info.run_id, "pruned_arch_spec.json", str(tmp_path))
    record = json.loads(Path(path).read_text())
    assert record["model"] == "timm:test_resnet" and record["widths"] == [] and record["layout"]
    torch.manual_seed(0)
    rebuilt = build_model(ArchSpec.from_dict(record))
    assert param_count(rebuilt) == prune_run.data.metrics["params_after"]
    assert prune_run.data.metrics["params_after"] < 0.75 * prune_run.data.metrics["params_before"]
    arms = {r.data.tags.get("arm") for r in runs if r.data.tags.get("rethink.kind") == "trial"}
    assert {"finetune", "scratch", "finetune-random", "uniform"} <= arms  # pareto mode (the tiny spec): one scratch arm
    # Section 5's uniform arm: one share of every group, matched to the pruned model's parameters
    path = client.download_artifacts(prune_run.info.run_id, "architectures/uniform.json", str(tmp_path))
    uniform = json.loads(Path(path).read_text())
    assert uniform["target_params"] == prune_run.data.metrics["params_after"]
    assert abs(uniform["params"] / uniform["target_params"] - 1) <= 0.01
    assert uniform["arch"]["layout"] != record["layout"]  # global pruning's widths are not uniform
    assert param_count(build_model(ArchSpec.from_dict(uniform["arch"]))) == uniform["params"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert_stores_agree(storage, "tiny", client)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model='timm:resnet181'"], "timm has no model 'resnet181'; closest: timm:resnet18"),
        (["model='timm:resnet18'"], "prune.method 'l1-norm' does not support timm:resnet18; valid: depgraph, random"),
        (["prune.criterion='l1'"], "prune.criterion is a depgraph option; prune.method is 'l1-norm'"),
        ([*LIBRARY[:3], "width_scale=0.5"], "width_scale is for the registry's models"),
        ([*LIBRARY[:3], "prune.criterion='l5'"], "unknown criterion 'l5'; valid names: bn-scale"),
        (["model_args={ img_size = 32 }"], "model_args are for library models (timm:NAME, torchvision:NAME), not"),
        (
            ["model='vgg16_nobn'", "prune.method='slimming'", "prune.ratio=0.5"],
            "prune.method 'slimming' ranks BN scales and vgg16_nobn has none; valid: l1-norm,",
        ),
        (["model='vgg16_nobn'", "base.sparsity=0.0001"], "base.sparsity is an L1 penalty on BN scales; vgg16_nobn has"),
        (
            [*LIBRARY[:3], "study.arms=['scratch-e', 'transferred']", "study.mode='capped'"],
            "the transferred arm needs another network's stages",
        ),
    ],
)
def test_library_model_fields_are_checked_on_load(overrides, message):
    with pytest.raises(SpecError) as e:
        load_spec(TINY, overrides)
    assert message in str(e.value)


def test_an_image_size_the_model_cannot_take_is_refused_before_training_naming_the_layer(
    tracking_uri, tmp_path, capsys
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = [*LIBRARY[:3], "model='timm:test_vit'", "prune.scope='local'"]
    args = study_args(storage, tmp_path / "runs", "--no-report", *_sets(overrides))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "timm:test_vit does not run on 1x8x8 images at layer 'patch_embed'" in err and "model_args" in err
    assert mlflow.MlflowClient().get_experiment_by_name("tiny") is None  # refused before any run opened
