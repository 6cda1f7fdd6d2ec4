"""End to end on digits for the methods that change the base's training: Soft Filter Pruning's base is
trained with SFP, pruned to the zeroed filters, and every arm trains what that pruning leaves."""

import mlflow
import optuna
from optuna.trial import TrialState
from torch import nn

from conftest import TINY, assert_stores_agree
from rethink.arms import pruned_flops
from rethink.checkpoint import load_checkpoint
from rethink.prune import PruneConfig, PrunedModel
from study.commands.cli import main

SFP = [
    "--set", "name=tiny-sfp",
    "--set", "model=resnet20",
    "--set", "prune.method=sfp",
    "--set", "prune.ratio=0.4",
    "--set", "base.sfp_ratio=0.4",
    "--set", "study.n_trials=1",
    "--set", 'study.baselines=["paper"]',
]  # fmt: skip


def _zeroed_filters(model: nn.Module) -> dict[str, int]:
    return {
        n: int((m.weight.flatten(1).abs().sum(1) == 0).sum())
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def test_sfp_study_trains_its_base_with_sfp_prunes_the_zeroed_filters_and_runs_every_arm(tracking_uri, tmp_path):
    storage, workdir = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "runs"
    assert main(["study", TINY, "--storage", storage, "--workdir", str(workdir), "--no-report", *SFP]) == 0

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny-sfp")
    (base_run,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'base'")
    assert base_run.data.params["sfp_ratio"] == "0.4"
    (base_file,) = (workdir / "tiny-sfp").glob("base-*/model.pt")
    model, base = load_checkpoint(base_file)
    # The base ends an SFP epoch: int(n × 0.4) filters of every conv, stem included, are zero.
    assert _zeroed_filters(model) == {
        n: int(m.out_channels * 0.4) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
    }

    (pruned_file,) = base_file.parent.glob("pruned-*.pt")
    small, pruned = load_checkpoint(pruned_file)
    assert pruned.spec.widths == tuple(w - int(w * 0.4) for w in base.spec.widths)
    assert sorted(pruned.masks) == sorted(
        n + ".weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and not n.endswith(".conv1")
    )
    macs = pruned_flops(PrunedModel(pruned.spec, small, PruneConfig("sfp", 0.4), masks=pruned.masks))
    (prune_run,) = client.search_runs([exp.experiment_id], "tags.`rethink.kind` = 'prune'")
    assert prune_run.data.metrics["flops_after"] == macs < prune_run.data.metrics["flops_before"]

    for arm, n in (("finetune", 2), ("scratch", 3)):
        trials = optuna.load_study(study_name=f"tiny-sfp.{arm}", storage=storage).get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * n
    assert_stores_agree(storage, "tiny-sfp", client)
