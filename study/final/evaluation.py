"""Final evaluation. For each final seed s (rethink.arms.final_seeds: a stream apart from the search's seed):
the base is trained on train+validation with seed s (the `unpruned` row, the untuned paper recipe), pruned
with the spec's method, and fine-tuned with each chosen config; scratch arms train on train+validation with
seed s. Every arm sees the same data and its own seed variance. Each run is scored once on the test set and
is an MLflow run; finished ones are reused. The seeds of one config train as one group (rethink.fuse:
stacked, in parallel, or one after another)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rethink.arms import INHERITING_ARMS, SCRATCH_ARMS, default_recipe, final_seeds, pruned_flops
from rethink.checkpoint import load_cached, save_checkpoint
from rethink.data import Split, load_dataset, normalized, train_test
from rethink.flops import training_flops
from rethink.models import build_model
from rethink.prune import PrunedModel, prune
from rethink.train import History, Runtime, config_digest, seed_everything
from study.plan.layout import arm_of
from study.plan.space import apply
from study.records.cluster import Cluster
from study.records.tracking import RunTree
from study.search.trunk import Trunk, _calibration, base_callbacks, control_for, prune_config

from .dispatch import train_runs
from .groups import Pending, Score
from .picks import Choice


def run_arm(study_arm: str) -> str:
    """The arm a final run's digest names: scratch arms build alike, so a config picked under Scratch-E and
    Scratch-B (or by scratch-b@B and scratch-b@P) trains once per seed."""
    arm = arm_of(study_arm)
    return "scratch" if arm in SCRATCH_ARMS else arm


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
    base_run: str = ""  # the per-seed base it fine-tunes from (fine-tune, lottery, control); "" for scratch
    trial: int | None = None  # the study trial the config came from (None: the per-seed base)
    n_test: int = 0  # test images scored: the floor of a cell's variance, p(1 - p)/n_test


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


def final_bases(
    trunk: Trunk,
    seeds: list[int],
    split: Split,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    workdir: Path,
    cluster: Cluster | None = None,
) -> dict[int, SeedBase]:
    """Train (or find again) the base of each seed on train+validation, as one group; score each once on
    the test set, save its checkpoints, and prune it."""
    spec = trunk.spec
    found: dict[int, tuple] = {}  # seed -> (model, init_state, test_acc, train_flops, run_id, digest)
    pending: list[Pending] = []
    todo: list[tuple[int, str, Path, dict]] = []
    for seed in seeds:
        config = replace(trunk.base_config, seed=seed)
        key = {"final_base": spec.base_digest(), "seed": seed, "data": "train+val"}
        if spec.base.sparsity or spec.base.sfp_ratio is not None:
            key["callbacks"] = "base"  # trained with the base's callbacks (before 2026-11-28 they were left out)
        digest = config_digest(key)
        folder = workdir / f"final-base-{digest}"
        run_id, metrics = finished_run(tree, digest, root)
        if run_id and (folder / "model.pt").is_file():
            model, _ = load_cached(folder / "model.pt", digest)
            init_state = load_cached(folder / "init.pt", digest)[1].state_dict
            found[seed] = (model, init_state, metrics["test_acc"], metrics["train_flops"], run_id, digest)
            continue
        if run_id:
            tree.end(run_id, "FINISHED", "its checkpoint is gone; the base was trained again")
        seed_everything(seed)  # the base's init comes from the seed itself; scratch inits have their own stream
        model = build_model(trunk.base_spec)
        init_state = {k: v.clone() for k, v in model.state_dict().items()}
        tags = {"arm": "unpruned", "choice": "paper", "seed": seed, "rethink.digest": digest, "rethink.role": "base"}
        params = {f"train.{k}": v for k, v in config.to_dict().items()} | {"train_images": len(split.y_train)}
        pending.append(
            Pending(
                f"final:base:seed{seed}",
                tags | {"data": "train+val"},
                params,
                model,
                config,
                f"seed {seed}",
                base_callbacks(spec),
            )
        )
        todo.append((seed, digest, folder, init_state))

    if pending:
        heading = f"[final] base (unpruned, paper recipe), seed {','.join(str(t[0]) for t in todo)}"
        score = Score((float(trunk.base_flops),) * len(pending), (0.0,) * len(pending))

        def keep(k: int, history: History) -> None:  # its checkpoints, before its run ends where it trains here
            _, digest, folder, init_state = todo[k]
            _save_base(pending[k], init_state, trunk, digest, folder, history.final.eval_acc)

        run_ids, histories = train_runs(pending, split, tree, root, runtime, score, heading, cluster=cluster, keep=keep)
        for (seed, digest, _, init_state), p, run_id, h in zip(todo, pending, run_ids, histories, strict=True):
            flops = training_flops(trunk.base_flops, h.images_seen)
            found[seed] = (p.model, init_state, h.final.eval_acc, flops, run_id, digest)
    pconfig = prune_config(spec)
    bases = {}
    for seed in seeds:
        model, init_state, test_acc, flops, run_id, digest = found[seed]
        model.cpu().eval()
        data = _calibration(split, pconfig.calibration_images) if pconfig.method == "thinet" else None
        pruned = prune(model, trunk.base_spec, pconfig, data)
        control = control_for(spec, model, trunk.base_spec, pruned, seed)  # drawn again for every final seed
        config = trunk.base_config
        params = {"lr": config.lr, "schedule": config.schedule, "augment": config.augment, "epochs": config.epochs}
        result = FinalResult(
            "unpruned",
            "paper",
            seed,
            test_acc,
            flops,
            flops,
            config.epochs,
            params,
            run_id,
            run_id,
            None,
            len(split.y_eval),
        )
        bases[seed] = SeedBase(seed, init_state, pruned, control, pruned_flops(pruned), flops, digest, result)
    return bases


def _save_base(p: Pending, init_state: dict, trunk: Trunk, digest: str, folder: Path, test_acc: float) -> None:
    """A trained final base's checkpoints (its init and its weights), found again by the digest next time."""
    init_model = build_model(trunk.base_spec)
    init_model.load_state_dict(init_state)
    meta = {"train": p.config.to_dict(), "digest": digest, "test_acc": test_acc}
    save_checkpoint(folder / "init.pt", init_model, trunk.base_spec, meta=meta | {"epoch": 0})
    save_checkpoint(folder / "model.pt", p.model.cpu(), trunk.base_spec, meta=meta)


def evaluate_choices(
    choices: list[Choice],
    trunk: Trunk,
    seeds: int,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    workdir: Path,
    share_base: bool = False,
    cluster: Cluster | None = None,
) -> list[FinalResult]:
    """Per seed: the base on train+val (the unpruned row), pruned; then every choice with that seed, the
    fine-tune and lottery ones from that seed's base. With `share_base`, one base serves every seed. The
    bases train as one group, then every choice's runs as another."""
    spec = trunk.spec
    ds = load_dataset(spec.dataset, spec.data_root)
    split = normalized(train_test(ds), spec.normalize, ds.name)
    all_seeds = final_seeds(spec.seed, seeds)  # a stream of their own: never the search's seed
    base_seeds = all_seeds[:1] if share_base else all_seeds
    bases = final_bases(trunk, base_seeds, split, tree, root, runtime, workdir, cluster)
    pairs = [(seed, bases[base_seeds[0]] if share_base else bases[seed]) for seed in all_seeds]
    chosen = _train_choices(choices, pairs, trunk, split, tree, root, runtime, cluster)
    return [bases[s].result for s in base_seeds] + chosen


def _train_choices(
    choices: list[Choice],
    pairs: list[tuple[int, SeedBase]],
    trunk: Trunk,
    split: Split,
    tree: RunTree,
    root: str,
    runtime: Runtime,
    cluster: Cluster | None = None,
) -> list[FinalResult]:
    """Every choice with every (seed, base) pair: finished runs found again, a config chosen twice (best@E
    and best@B, say) trained once per seed, and the rest trained as one group."""
    spec = trunk.spec
    entries: list[tuple[Choice, int, SeedBase, int, str]] = []  # (choice, seed, base, epochs, digest)
    found: dict[str, tuple[str, float, float, float]] = {}  # digest -> run id, test acc, train and pipeline FLOPs
    pending: list[Pending] = []
    todo: dict[str, tuple[int, SeedBase, object]] = {}  # digest -> (index in pending, base, arm)
    for choice in choices:
        recipe = default_recipe(choice.arm, trunk.base_config, trunk.base_flops, trunk.pruned_flops)
        for seed, base in pairs:
            config = apply(choice.params, replace(recipe, seed=seed))
            digest = config_digest(
                {
                    "arm": run_arm(choice.study_arm),
                    "config": config.to_dict(),
                    "setting": config_digest(spec.study_fields()),
                    "base": base.digest,
                }
                | ({"control": "drawn per final seed"} if arm_of(choice.study_arm) == "finetune-random" else {})
            )
            entries.append((choice, seed, base, config.epochs, digest))
            if digest in found or digest in todo:
                continue
            run_id, metrics = finished_run(tree, digest, root)
            if run_id:
                flops = metrics["train_flops"]
                found[digest] = (run_id, metrics["test_acc"], flops, metrics.get("pipeline_flops", math.nan))
                continue
            tags = {
                "arm": choice.arm,
                "choice": choice.name,
                "seed": seed,
                "study_arm": choice.study_arm,
                "rethink.digest": digest,
                "rethink.base_run": base.result.run_id,
                "base_seed": base.seed,
                "data": "train+val",
            }
            if arm_of(choice.study_arm) == "finetune-random":
                tags["control_seed"] = base.control.config.seed  # the random selection this run fine-tunes
            params = {f"train.{k}": v for k, v in config.to_dict().items()} | {
                "trial": choice.trial if choice.trial is not None else "",
                "train_images": len(split.y_train),
            }
            arm = trunk.build(arm_of(choice.study_arm), seed, base)  # on this seed's base
            name, label = f"final:{choice.arm}:{choice.name}:seed{seed}", f"{choice.arm} {choice.name} seed {seed}"
            todo[digest] = (len(pending), base, arm)
            pending.append(Pending(name, tags, params, arm.model, config, label, list(arm.callbacks)))

    order = list(todo.values())
    score = Score(
        tuple(float(arm.forward_macs) for _, _, arm in order),
        tuple(base.train_flops if arm.inherits_base else 0.0 for _, base, arm in order),
    )
    if pending:
        again = len(entries) - len(pending)
        heading = f"[final] {len(choices)} chosen configs × {len(pairs)} seeds" + (
            f" ({again} found again or chosen twice)" if again else ""
        )
        run_ids, histories = train_runs(pending, split, tree, root, runtime, score, heading, cluster=cluster)
        for digest, (k, _, _) in todo.items():
            m = score(k, histories[k])
            found[digest] = (run_ids[k], m["test_acc"], m["train_flops"], m["pipeline_flops"])
    results = []
    for choice, seed, base, epochs, digest in entries:
        run_id, test_acc, flops, pipeline = found[digest]
        results.append(
            FinalResult(
                choice.arm,
                choice.name,
                seed,
                test_acc,
                flops,
                pipeline,
                epochs,
                choice.params,
                run_id,
                base.result.run_id if arm_of(choice.study_arm) in INHERITING_ARMS else "",  # pairs by its base
                choice.trial,
                len(split.y_eval),
            )
        )
    return results
