"""Bases beside the search's: trained with the base recipe and a seed of their own, pruned by the spec's
method, and found again by digest. The final evaluation trains one per final seed on train+validation
(scored on the test set: the `unpruned` row); the confirmation trains its own on the search split (scored
on validation), so that the picks of arms that inherit a base are confirmed over bases, as the final
evaluation varies them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from rethink.arms import pruned_flops
from rethink.checkpoint import load_cached, save_checkpoint
from rethink.flops import training_flops
from rethink.models import build_model
from rethink.prune import PrunedModel, needs_data
from rethink.prune.matched import DerivedArch
from rethink.splits import Split
from rethink.train import History, Runtime, config_digest, seed_everything
from study.records.cluster import Cluster
from study.records.tracking import RunTree
from study.search.arch_arms import derive_arms
from study.search.base_file import assumed_train_flops, score, weights_note
from study.search.rounds import RoundPlace, prune_base, rounds_train
from study.search.trunk import Trunk, base_callbacks, calibration, control_for, prune_config

from .dispatch import train_runs
from .groups import Pending, Score


@dataclass(frozen=True)
class BaseStage:
    """Which bases: the final evaluation's (train+validation, scored on test) or the confirmation's (the
    search's training split, scored on validation)."""

    label: str  # final, or confirm: names their runs, folders and digests
    kind: str  # the MLflow kind of their runs: final, or confirm-base
    data: str  # train+val, or train
    metric: str  # test_acc, or val_acc

    def key(self, spec, seed: int) -> dict:
        return {f"{self.label}_base": spec.base_digest(), "seed": seed, "data": self.data}


FINAL = BaseStage("final", "final", "train+val", "test_acc")
CONFIRM = BaseStage("confirm", "confirm-base", "train", "val_acc")


@dataclass(eq=False)
class SeedBase:
    """The base of one seed and what pruning it gives (anything `Trunk.build` can build an arm on)."""

    seed: int
    init_state: dict[str, torch.Tensor]
    pruned: PrunedModel
    control: PrunedModel | None  # finetune-random's random selection at the same widths
    pruned_flops: int
    train_flops: float
    digest: str
    run_id: str
    acc: float  # its score: test accuracy (final) or validation accuracy (confirmation)
    prune_train: float = 0.0  # the pruning's own training after the base (iterative rounds), MACs
    arch: dict[str, DerivedArch] = field(default_factory=dict)  # Section 5's arms at this seed's pruned size

    @property
    def inherited(self) -> float:
        """What an arm trained from this base carries in its pipeline: the base's training and the pruning's."""
        return self.train_flops + self.prune_train

    def pruned_for(self, arm: str) -> PrunedModel:
        return self.control if arm == "finetune-random" else self.pruned


def finished_run(tree: RunTree, digest: str, root: str, kind: str = "final", metric: str = "test_acc"):
    """A finished run of `kind` with this digest: under `root`, else anywhere in the experiment (an earlier
    `mlflow run` is another root); one left unfinished under `root` is closed."""
    if old := tree.find({"rethink.kind": kind, "rethink.digest": digest}, root):
        run = tree.client.get_run(old)
        if run.info.status == "FINISHED" and metric in run.data.metrics:
            return old, run.data.metrics
        if run.info.status == "RUNNING":
            tree.end(old, "KILLED", "interrupted; evaluated again")
    done = tree.client.search_runs(
        [tree.experiment_id],
        f"tags.`rethink.kind` = '{kind}' and tags.`rethink.digest` = '{digest}' and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if done and metric in done[0].data.metrics:
        return done[0].info.run_id, done[0].data.metrics
    return None, None


def train_bases(
    trunk: Trunk,
    seeds: list[int],
    split: Split,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    workdir: Path,
    cluster: Cluster | None = None,
    stage: BaseStage = FINAL,
) -> dict[int, SeedBase]:
    """Train (or find again) the base of each seed on `split`, as one group; score each once, save its
    checkpoints, and prune it (ThiNet's calibration sample drawn from the seed's own stream)."""
    spec = trunk.spec
    found: dict[int, tuple] = {}  # seed -> (model, init_state, acc, train_flops, run_id, digest)
    pending: list[Pending] = []
    todo: list[tuple[int, str, Path, dict]] = []
    for seed in seeds:
        config = replace(trunk.base_config, seed=seed)
        key = stage.key(spec, seed)
        if spec.base.sparsity or spec.base.sfp_ratio is not None:
            key["callbacks"] = "base"  # trained with the base's callbacks (before 2026-11-28 they were left out)
        digest = config_digest(key)
        if spec.weights:  # the file's base, the trunk's own, scored on this stage's evaluation images
            found[seed] = _file_base(trunk, seed, digest, split, tree, root, workdir, stage)
            continue
        folder = workdir / f"{stage.label}-base-{digest}"
        run_id, metrics = finished_run(tree, digest, root, stage.kind, stage.metric)
        if run_id and (folder / "model.pt").is_file():
            model, _ = load_cached(folder / "model.pt", digest)
            init_state = load_cached(folder / "init.pt", digest)[1].state_dict
            found[seed] = (model, init_state, metrics[stage.metric], metrics["train_flops"], run_id, digest)
            continue
        if run_id:
            tree.end(run_id, "FINISHED", "its checkpoint is gone; the base was trained again")
        seed_everything(seed)  # the base's init comes from the seed itself; scratch inits have their own stream
        model = build_model(trunk.base_spec)
        init_state = {k: v.clone() for k, v in model.state_dict().items()}
        tags = {"arm": "unpruned", "choice": "paper", "seed": seed, "rethink.digest": digest, "rethink.role": "base"}
        params = {f"train.{k}": v for k, v in config.to_dict().items()} | {"train_images": len(split.y_train)}
        name = f"{stage.label}:base:seed{seed}"
        pending.append(
            Pending(name, tags | {"data": stage.data}, params, model, config, f"seed {seed}", base_callbacks(spec))
        )
        todo.append((seed, digest, folder, init_state))

    if pending:
        what = "base (unpruned, paper recipe)" if stage is FINAL else "bases to confirm the inheriting arms' picks on"
        heading = f"[{stage.label}] {what}, seed {','.join(str(t[0]) for t in todo)}"
        score = Score((float(trunk.base_flops),) * len(pending), (0.0,) * len(pending), stage.metric)

        def keep(k: int, history: History) -> None:  # its checkpoints, before its run ends where it trains here
            _, digest, folder, init_state = todo[k]
            _save_base(pending[k], init_state, trunk, digest, folder, {stage.metric: history.final.eval_acc})

        run_ids, histories = train_runs(
            pending, split, tree, root, runtime, score, heading, stage.kind, cluster=cluster, keep=keep
        )
        for (seed, digest, _, init_state), p, run_id, h in zip(todo, pending, run_ids, histories, strict=True):
            flops = training_flops(trunk.base_flops, h.images_seen)
            found[seed] = (p.model, init_state, h.final.eval_acc, flops, run_id, digest)
    pconfig = prune_config(spec)
    bases = {}
    for seed in seeds:
        model, init_state, acc, flops, run_id, digest = found[seed]
        model.cpu().eval()
        data = calibration(split, pconfig.calibration_images, seed) if needs_data(pconfig) else None
        place = RoundPlace(tree, root, workdir / f"{stage.label}-base-{digest}", f"{stage.label} seed {seed}")
        recipe = replace(trunk.base_config, seed=seed)
        pruned, rounds = prune_base(
            model, trunk.base_spec, pconfig, data, init_state, digest, split, recipe, runtime, place
        )
        control = control_for(spec, model, trunk.base_spec, pruned, seed)  # drawn again for every seed
        arch = derive_arms(spec, trunk.base_spec, pruned, trunk.pattern)  # matched to this seed's pruned size
        bases[seed] = SeedBase(
            seed,
            init_state,
            pruned,
            control,
            pruned_flops(pruned),
            flops,
            digest,
            run_id,
            acc,
            rounds_train(rounds),
            arch,
        )
    return bases


def _save_base(p: Pending, init_state: dict, trunk: Trunk, digest: str, folder: Path, score: dict) -> None:
    """A trained base's checkpoints (its init and its weights), found again by the digest next time."""
    init_model = build_model(trunk.base_spec)
    init_model.load_state_dict(init_state)
    meta = {"train": p.config.to_dict(), "digest": digest, **score}
    save_checkpoint(folder / "init.pt", init_model, trunk.base_spec, meta=meta | {"epoch": 0})
    save_checkpoint(folder / "model.pt", p.model.cpu(), trunk.base_spec, meta=meta)


def _file_base(trunk: Trunk, seed: int, digest: str, split: Split, tree: RunTree, root: str, workdir: Path, stage):
    """A stage's base when the spec's comes from a weights file: that model (the trunk's checkpoint), scored
    once on the stage's evaluation images and recorded as a run that says it was not trained; its training
    FLOPs are the spec's base recipe's (the file's own are unknown)."""
    spec = trunk.spec
    model, _ = load_cached(workdir / f"base-{spec.base_digest()}" / "model.pt", spec.base_digest())
    flops = assumed_train_flops(trunk.base_flops, trunk.base_config, len(split.y_train))
    run_id, metrics = finished_run(tree, digest, root, stage.kind, stage.metric)
    if run_id:
        return model, trunk.init_state, metrics[stage.metric], flops, run_id, digest
    acc = score(model, split, trunk.base_config)
    tags = {"arm": "unpruned", "choice": "paper", "seed": seed, "rethink.digest": digest, "rethink.role": "base"}
    tags |= {"data": stage.data, "rethink.base_source": "weights"}
    run_id = tree.child(root, f"{stage.label}:base:seed{seed}", stage.kind, tags, reuse=False)
    tree.log_params(run_id, {"weights": spec.weights, "weights_sha256": spec.weights_sha256})
    tree.log_metrics(run_id, {stage.metric: acc, "train_flops": flops})
    tree.end(run_id, "FINISHED", weights_note(spec))
    return model, trunk.init_state, acc, flops, run_id, digest
