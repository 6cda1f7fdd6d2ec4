"""Final evaluation. For each seed s: the base is trained on train+validation with seed s (the `unpruned`
row, the untuned paper recipe), pruned with the spec's method, and fine-tuned with each chosen config;
scratch arms train on train+validation with seed s. Every arm sees the same data and its own seed
variance. Each run is scored once on the test set and is an MLflow run; finished ones are reused."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rethink.arms import build_arm, default_recipe, pruned_flops
from rethink.checkpoint import load_cached, save_checkpoint
from rethink.data import Split, load_dataset, normalized, train_test
from rethink.flops import training_flops
from rethink.models import build_model
from rethink.prune import PrunedModel, prune
from rethink.train import Runtime, config_digest, seed_everything, train

from .lifecycle import ending
from .picks import Choice
from .progress import PrintProgress
from .space import apply
from .tracking import MlflowEpochLogger, RunTree
from .trunk import Trunk, _calibration, base_callbacks, control_for, prune_config


@dataclass(frozen=True)
class FinalResult:
    arm: str
    choice: str
    seed: int
    test_acc: float
    train_flops: float
    pipeline_flops: float
    epochs: int
    params: dict
    run_id: str
    base_run: str = ""
    trial: int | None = None  # the study trial the config came from (None: the per-seed base)


@dataclass(eq=False)
class SeedBase:
    """The base of one final seed, trained on train+validation, and what pruning it gives."""

    seed: int
    init_state: dict[str, torch.Tensor]
    pruned: PrunedModel
    control: PrunedModel | None  # finetune-random's random selection at the same widths
    pruned_flops: int
    train_flops: float
    digest: str
    result: FinalResult


def _finished(tree: RunTree, digest: str, root: str):
    """A finished final run with this digest: under this spec run, else anywhere in the experiment (an
    earlier `mlflow run` is another root); one left unfinished under this root is closed."""
    if old := tree.find({"rethink.kind": "final", "rethink.digest": digest}, root):
        run = tree.client.get_run(old)
        if run.info.status == "FINISHED" and "test_acc" in run.data.metrics:
            return old, run.data.metrics
        if run.info.status == "RUNNING":
            tree.end(old, "KILLED", "interrupted; evaluated again")
    done = tree.client.search_runs(
        [tree.experiment_id],
        f"tags.`rethink.kind` = 'final' and tags.`rethink.digest` = '{digest}' and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if done and "test_acc" in done[0].data.metrics:
        return done[0].info.run_id, done[0].data.metrics
    return None, None


def final_base(
    trunk: Trunk, seed: int, split: Split, tree: RunTree, root: str, runtime: Runtime, workdir: Path, label: str
) -> SeedBase:
    """Train (or find again) the base of `seed` on train+validation, score it once, and prune it."""
    spec = trunk.spec
    config = replace(trunk.base_config, seed=seed)
    key = {"final_base": spec.base_digest(), "seed": seed, "data": "train+val"}
    if spec.base.sparsity or spec.base.sfp_ratio is not None:
        key["callbacks"] = "base"  # trained with the base's callbacks (before 2026-11-28 they were left out)
    digest = config_digest(key)
    folder = workdir / f"final-base-{digest}"
    run_id, metrics = _finished(tree, digest, root)
    if run_id and (folder / "model.pt").is_file():
        model, _ = load_cached(folder / "model.pt", digest)
        init_state = load_cached(folder / "init.pt", digest)[1].state_dict
        test_acc, flops = metrics["test_acc"], metrics["train_flops"]
    else:
        if run_id:
            tree.end(run_id, "FINISHED", "its checkpoint is gone; the base was trained again")
        tags = {
            "arm": "unpruned",
            "choice": "paper",
            "seed": seed,
            "rethink.digest": digest,
            "rethink.role": "base",
            "data": "train+val",
            "rethink.runtime": runtime.describe(),
        }
        run_id = tree.child(root, f"final:base:seed{seed}", "final", tags, reuse=False)
        tree.log_params(
            run_id, {f"train.{k}": v for k, v in config.to_dict().items()} | {"train_images": len(split.y_train)}
        )
        print(f"{label} base (unpruned, paper recipe) seed {seed}: {config.epochs} epochs", file=sys.stderr, flush=True)
        seed_everything(seed)  # the base's init comes from the seed itself; scratch inits have their own stream
        model = build_model(trunk.base_spec)
        init_state = {k: v.clone() for k, v in model.state_dict().items()}
        callbacks = [
            *base_callbacks(spec),
            MlflowEpochLogger(run_id, "test"),
            PrintProgress(config.epochs, "  ", every=10),
        ]
        try:
            history = train(model, split, config, callbacks, runtime, eval_final_only=True)
        except BaseException as e:
            tree.end_quietly(run_id, *ending(e))
            raise
        model.cpu()
        test_acc, flops = history.final.eval_acc, training_flops(trunk.base_flops, history.images_seen)
        init_model = build_model(trunk.base_spec)
        init_model.load_state_dict(init_state)
        meta = {"train": config.to_dict(), "digest": digest, "test_acc": test_acc}
        save_checkpoint(folder / "init.pt", init_model, trunk.base_spec, meta=meta | {"epoch": 0})
        save_checkpoint(folder / "model.pt", model, trunk.base_spec, meta=meta)
        tree.log_metrics(run_id, {"test_acc": test_acc, "train_flops": flops, "pipeline_flops": flops}, config.epochs)
        tree.end(run_id)
        print(f"  test acc {test_acc:.4f}", file=sys.stderr, flush=True)
    model.eval()
    pconfig = prune_config(spec)
    data = _calibration(split, pconfig.calibration_images) if pconfig.method == "thinet" else None
    pruned = prune(model, trunk.base_spec, pconfig, data)
    control = control_for(spec, model, trunk.base_spec, pruned)
    params = {"lr": config.lr, "schedule": config.schedule, "augment": config.augment, "epochs": config.epochs}
    result = FinalResult("unpruned", "paper", seed, test_acc, flops, flops, config.epochs, params, run_id, run_id)
    return SeedBase(seed, init_state, pruned, control, pruned_flops(pruned), flops, digest, result)


def evaluate_choices(
    choices: list[Choice],
    trunk: Trunk,
    seeds: int,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    workdir: Path,
    share_base: bool = False,
) -> list[FinalResult]:
    """Per seed: the base on train+val (the unpruned row), pruned; then every choice with that seed, the
    fine-tune and lottery ones from that seed's base. With `share_base`, one base serves every seed."""
    spec = trunk.spec
    ds = load_dataset(spec.dataset, spec.data_root)
    split = normalized(train_test(ds), spec.normalize, ds.name)
    results: list[FinalResult] = []
    n_jobs = seeds * len(choices) + (1 if share_base else seeds)
    job = 0
    shared: SeedBase | None = None
    for s in range(seeds):
        seed = spec.seed + s
        if shared is None or not share_base:
            job += 1
            base = final_base(trunk, seed, split, tree, root, runtime, workdir, f"[final {job}/{n_jobs}]")
            results.append(base.result)
            shared = base
        base = shared
        for choice in choices:
            job += 1
            results.append(
                _train_choice(choice, base, seed, trunk, split, tree, root, runtime, f"[final {job}/{n_jobs}]")
            )
    return results


def _train_choice(
    choice: Choice,
    base: SeedBase,
    seed: int,
    trunk: Trunk,
    split: Split,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    label: str,
) -> FinalResult:
    spec = trunk.spec
    recipe = default_recipe(choice.arm, trunk.base_config, trunk.base_flops, trunk.pruned_flops)
    config = apply(choice.params, replace(recipe, seed=seed))
    digest = config_digest(
        {
            "arm": choice.study_arm,
            "config": config.to_dict(),
            "setting": config_digest(spec.study_fields()),
            "base": base.digest,
        }
    )
    # The same config chosen twice (best@E and best@B, say) is trained once per seed.
    run_id, metrics = _finished(tree, digest, root)
    if run_id:
        return FinalResult(
            choice.arm,
            choice.name,
            seed,
            metrics["test_acc"],
            metrics["train_flops"],
            metrics.get("pipeline_flops", math.nan),
            config.epochs,
            choice.params,
            run_id,
            base.result.run_id,
            choice.trial,
        )
    tags = {
        "arm": choice.arm,
        "choice": choice.name,
        "seed": seed,
        "study_arm": choice.study_arm,
        "rethink.digest": digest,
        "rethink.runtime": runtime.describe(),
        "rethink.base_run": base.result.run_id,
        "base_seed": base.seed,
        "data": "train+val",
    }
    run_id = tree.child(root, f"final:{choice.arm}:{choice.name}:seed{seed}", "final", tags, reuse=False)
    tree.log_params(
        run_id,
        {f"train.{k}": v for k, v in config.to_dict().items()}
        | {"trial": choice.trial if choice.trial is not None else "", "train_images": len(split.y_train)},
    )
    print(f"{label} {choice.arm} {choice.name} seed {seed}: {config.epochs} epochs", file=sys.stderr, flush=True)
    arm = build_arm(
        choice.study_arm,
        base.control if choice.study_arm == "finetune-random" else base.pruned,
        trunk.base_spec,
        trunk.base_config,
        trunk.base_flops,
        seed=seed,
        init_state=base.init_state,
        pruned_macs=base.pruned_flops,
    )
    callbacks = [*arm.callbacks, MlflowEpochLogger(run_id, "test"), PrintProgress(config.epochs, "  ", every=10)]
    try:
        history = train(arm.model, split, config, callbacks, runtime, eval_final_only=True)
    except BaseException as e:
        tree.end_quietly(run_id, *ending(e))
        raise
    flops = training_flops(arm.forward_macs, history.images_seen)
    pipeline = flops + (base.train_flops if arm.inherits_base else 0.0)
    tree.log_metrics(
        run_id, {"test_acc": history.final.eval_acc, "train_flops": flops, "pipeline_flops": pipeline}, config.epochs
    )
    tree.end(run_id)
    print(f"  test acc {history.final.eval_acc:.4f}", file=sys.stderr, flush=True)
    return FinalResult(
        choice.arm,
        choice.name,
        seed,
        history.final.eval_acc,
        flops,
        pipeline,
        config.epochs,
        choice.params,
        run_id,
        base.result.run_id,
        choice.trial,
    )
