"""A base from a weights file (`weights = PATH`): loaded, scored, saved as the spec's base checkpoint and
recorded as a base run that says it was not trained here. Every stage's base (the search's, each final seed's,
each confirmation's) is this one model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rethink.checkpoint import save_checkpoint
from rethink.flops import forward_flops, param_count, training_flops
from rethink.models import ArchSpec, build_model
from rethink.models.weights import load_weights
from rethink.splits import Split
from rethink.train import TrainConfig, evaluate, make_loaders, seed_everything
from study.plan.spec import Spec
from study.records.tracking import RunTree


def weights_note(spec: Spec) -> str:
    return (
        f"not trained here: loaded from the weights file {spec.weights} (SHA-256 {spec.weights_sha256}); its "
        f"training data and cost are the file's, unknown to rethink"
    )


def weights_caveat(spec: Spec) -> str:
    """What a base from a file changes in the verdicts, for the report."""
    return (
        f"the base is the weights file {spec.weights} (SHA-256 {spec.weights_sha256[:12]}…), not trained here: "
        f"every final seed and every confirmation fine-tunes that one base, so fine-tune's seed spread excludes "
        f"the base's; the data it was trained on are unknown to rethink (had it seen this spec's test images, "
        f"the inheriting arms would be favoured); the inheriting arms' pipeline FLOPs count the spec's [base] "
        f"recipe ({spec.base.epochs} epochs) as its cost, and E, B and P follow from that recipe"
    )


def assumed_train_flops(base_flops: float, config: TrainConfig, n_train: int) -> float:
    """What a base from a file counts in the inheriting arms' pipelines: the spec's base recipe on this
    training set (the file's own cost is unknown)."""
    return training_flops(base_flops, config.epochs * n_train)


def score(model: nn.Module, split: Split, config: TrainConfig) -> float:
    """Accuracy on the split's evaluation images (validation in the search, test in the final evaluation)."""
    _, loader = make_loaders(split, config, torch.device("cpu"))
    return evaluate(model, loader)[1]


def load_base(spec: Spec, base_spec: ArchSpec, seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The file's weights in the spec's architecture, and the fresh init they replaced (kept as init.pt; no
    arm rewinds to it: the lottery arm and iterative pruning are refused with weights)."""
    seed_everything(seed)
    model = build_model(base_spec)
    init_state = {k: v.clone() for k, v in model.state_dict().items()}
    load_weights(model, spec.weights, spec.model)
    return model.eval(), init_state


def record_base_file(
    spec: Spec,
    base_spec: ArchSpec,
    split: Split,
    config: TrainConfig,
    tree: RunTree,
    root: str,
    base_dir: Path,
    tags: dict[str, str],
    shape: tuple[int, int, int],
) -> tuple[nn.Module, dict[str, torch.Tensor], str, float]:
    """The search's base from the file: scored on validation, checkpointed under the base digest, and a
    FINISHED base run holding the file's path and SHA-256 and the note that it was not trained."""
    model, init_state = load_base(spec, base_spec, spec.seed)
    val_acc = score(model, split, config)
    meta = {"digest": tags["rethink.digest"], "val_acc": val_acc, "weights": spec.weights}
    meta["weights_sha256"] = spec.weights_sha256
    init_model = build_model(base_spec)
    init_model.load_state_dict(init_state)
    save_checkpoint(base_dir / "init.pt", init_model, base_spec, meta=meta | {"epoch": 0})
    save_checkpoint(base_dir / "model.pt", model, base_spec, meta=meta)
    run = tree.child(root, "base", "base", tags | {"rethink.base_source": "weights"}, reuse=False)
    tree.log_params(
        run,
        {"model": base_spec.model, "widths": ",".join(map(str, base_spec.widths)), "weights": spec.weights}
        | {"weights_sha256": spec.weights_sha256, "dataset": spec.dataset},
    )
    tree.log_metrics(
        run, {"val_acc": val_acc, "flops_forward": forward_flops(model, shape), "params": param_count(model)}
    )
    tree.client.log_dict(run, base_spec.to_dict(), "arch_spec.json")
    tree.end(run, "FINISHED", weights_note(spec))
    print(f"[base] {weights_note(spec)}; validation accuracy {val_acc:.4f}", flush=True)
    return model, init_state, run, val_acc
