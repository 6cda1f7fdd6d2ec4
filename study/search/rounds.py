"""Pruning a base with the spec's method, iterative magnitude pruning included: each retraining round is
an MLflow run of its own and a checkpoint found again by digest, so a killed job resumes at the round it
was in. The trunk's base and every final or confirmation base are pruned through `prune_base`."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from rethink.arms import derive_seed
from rethink.checkpoint import load_cached, save_checkpoint
from rethink.flops import nonzero_forward_flops, training_flops
from rethink.models import ArchSpec
from rethink.prune import KeepMasked, PruneConfig, PrunedModel, Round, iterative_magnitude, method_version, prune
from rethink.splits import Split
from rethink.train import Runtime, TrainConfig, config_digest, train
from study.records.progress import PrintProgress
from study.records.tracking import MlflowEpochLogger, RunTree


@dataclass(frozen=True)
class RoundPlace:
    """Where a base's rounds are kept and logged: its folder, the MLflow parent, a label for lines and runs."""

    tree: RunTree
    root: str
    folder: Path
    label: str  # e.g. "prune" (the trunk), "final seed 3"


def pruned_digest(base_digest: str, pconfig: PruneConfig) -> str:
    """Names the pruned model: its base, the prune config, and the method's version when above 1."""
    key = {"base": base_digest, "prune": pconfig.to_dict()}
    if (version := method_version(pconfig.method)) > 1:
        key["method_version"] = version
    return config_digest(key)


def rounds_train(rounds: list[Round]) -> float:
    """Training MACs the rounds spent after the base: part of every inheriting arm's pipeline."""
    return sum(training_flops(r.forward_macs, r.images_seen) for r in rounds)


def rounds_meta(rounds: list[Round]) -> list[dict]:
    return [vars(r) for r in rounds]


def rounds_from_meta(meta: list[dict] | None) -> list[Round]:
    return [Round(**r) for r in meta or []]


def prune_base(
    base: nn.Module,
    spec: ArchSpec,
    config: PruneConfig,
    data: torch.Tensor | None,
    init_state: dict[str, torch.Tensor],
    base_digest: str,
    split: Split,
    recipe: TrainConfig,
    runtime: Runtime,
    place: RoundPlace | None,
) -> tuple[PrunedModel, list[Round]]:
    """The method applied to a trained base; with `config.rounds` > 1, prune → rewind → retrain rounds on
    `split` with the base's `recipe` (its data order from a stream of its own per round)."""
    if config.rounds == 1:
        return prune(base, spec, config, data), []
    if place is None:
        raise ValueError("iterative pruning needs a place to keep its rounds")
    shape = (spec.in_channels, spec.input_size, spec.input_size)

    def retrain(k: int, ticket: nn.Module, masks: dict[str, torch.Tensor]) -> tuple[nn.Module, int]:
        digest = config_digest({"base": base_digest, "prune": config.to_dict(), "round": k})
        path = place.folder / f"round{k}-{digest}.pt"
        tags = {"rethink.digest": digest, "round": str(k)}
        if path.is_file():
            model, ckpt = load_cached(path, digest)
            return model, int(ckpt.meta["images_seen"])
        config_k = replace(recipe, seed=derive_seed(recipe.seed, f"round{k}"))
        run = place.tree.child(place.root, f"{place.label}:round{k}", "prune-round", tags, reuse=False)
        place.tree.log_params(run, {f"train.{n}": v for n, v in config_k.to_dict().items()} | {"round": k})
        line = f"[{place.label}] round {k}/{config.rounds}: "
        print(f"{line}the ticket (init weights, {_density(masks):.1%} of conv weights kept) retrained", flush=True)
        callbacks = [KeepMasked(masks), MlflowEpochLogger(run), PrintProgress(config_k.epochs, line, every=5)]
        start = time.perf_counter()
        try:
            history = train(ticket, split, config_k, callbacks, runtime)
        except BaseException as err:
            place.tree.end_quietly(run, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", repr(err))
            raise
        ticket.cpu()
        macs = nonzero_forward_flops(ticket, shape)
        meta = {"digest": digest, "images_seen": history.images_seen, "val_acc": history.final.eval_acc}
        save_checkpoint(path, ticket, spec, masks, meta=meta)
        place.tree.log_metrics(
            run,
            {
                "val_acc": history.final.eval_acc,
                "sparsity": 1 - _density(masks),
                "train_flops": training_flops(macs, history.images_seen),
                "wall_seconds": time.perf_counter() - start,
            },
            step=config_k.epochs,
        )
        place.tree.end(run)
        return ticket, history.images_seen

    return iterative_magnitude(base, spec, config, init_state, retrain, lambda m: nonzero_forward_flops(m, shape))


def _density(masks: dict[str, torch.Tensor]) -> float:
    return float(sum(m.sum() for m in masks.values())) / sum(m.numel() for m in masks.values())
