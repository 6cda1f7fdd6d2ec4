"""Final evaluation. For each final seed s (rethink.arms.final_seeds: a stream apart from the search's seed):
the base is trained on train+validation with seed s (the `unpruned` row, the untuned paper recipe), pruned
with the spec's method, and fine-tuned with each chosen config; scratch arms train seed s's pruned
architecture on train+validation. Every arm sees the same data and its own seed variance. Budgets are each
seed's own: where a seed's pruned model has other FLOPs than the search's (slimming's global threshold,
global magnitude pruning), a Scratch-B or P run's epochs follow that seed's budget (layout.seed_epochs), and
every run is checked against it. Each run is scored once on the test set and is an MLflow run; finished ones
are reused. The seeds of one config train as one group (rethink.fuse: stacked, in parallel, or one after
another)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from rethink.arms import ARCH_ARMS, INHERITING_ARMS, SCRATCH_ARMS, default_recipe, final_seeds
from rethink.data import load_dataset
from rethink.prune import needs_data
from rethink.splits import Split, normalized, train_test
from rethink.train import Runtime, config_digest
from study.plan.arch import prune_config
from study.plan.layout import arch_budgets, arm_of, budgets, caps_of, seed_epochs
from study.plan.space import apply
from study.records.cluster import Cluster
from study.records.tracking import RunTree
from study.search.trunk import Trunk

from .bases import FINAL, SeedBase, finished_run, train_bases
from .dispatch import train_runs
from .groups import Pending, Score
from .picks import Choice, budget_of


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
    budget: str = ""  # the budget it is held to (E, B, P; "" for the unpruned row)
    within: bool | None = None  # within that budget as this seed's pruned model counts it (None: no budget)
    search_epochs: int | None = None  # the pick's epochs in the search, when this seed's budget changed them


def base_result(base: SeedBase, trunk: Trunk, n_test: int) -> FinalResult:
    """A final seed's base as the `unpruned` row's run (the untuned paper recipe)."""
    c = trunk.base_config
    params = {"lr": c.lr, "schedule": c.schedule, "augment": c.augment, "epochs": c.epochs}
    flops = base.train_flops
    return FinalResult(
        "unpruned", "paper", base.seed, base.acc, flops, flops, c.epochs, params, base.run_id, base.run_id, None, n_test
    )


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
    bases = train_bases(trunk, base_seeds, split, tree, root, runtime, workdir, cluster, FINAL)
    pairs = [(seed, bases[base_seeds[0]] if share_base else bases[seed]) for seed in all_seeds]
    chosen = _train_choices(choices, pairs, trunk, split, tree, root, runtime, cluster)
    return [base_result(bases[s], trunk, len(split.y_eval)) for s in base_seeds] + chosen


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
    n_train = len(split.y_train)
    pruned_caps = {
        id(b): budgets(trunk.base_config, trunk.base_flops, b.pruned_flops, n_train, b.prune_train) for _, b in pairs
    }

    def own(base: SeedBase, arm: str):
        """A seed's budgets for an arm: its pruned model's, or its own architecture's (Section 5's arms)."""
        arch = {
            a: arch_budgets(pruned_caps[id(base)], trunk.base_config, trunk.base_flops, d.macs, n_train)
            for a, d in base.arch.items()
            if a == arm
        }
        return caps_of(pruned_caps[id(base)], arch, arm)

    for choice in choices:
        label = budget_of(choice)
        scaled = arm_of(choice.study_arm) in (*SCRATCH_ARMS, *ARCH_ARMS)
        search = trunk.caps_for(choice.study_arm)
        for seed, base in pairs:
            recipe = default_recipe(choice.arm, trunk.base_config, trunk.base_flops, base.pruned_flops)
            config = apply(choice.params, replace(recipe, seed=seed))
            if scaled and "epochs" in choice.params:  # its epochs on this seed's budget
                tuned = choice.kind == "searched" or choice.name.startswith("best")
                mine = own(base, choice.study_arm)
                config = replace(config, epochs=seed_epochs(config.epochs, label, search, mine, tuned))
            key = {
                "arm": run_arm(choice.study_arm),
                "config": config.to_dict(),
                "setting": config_digest(spec.study_fields()),
                "base": base.digest,
            }
            if arm_of(choice.study_arm) == "finetune-random":
                key["control"] = "drawn per final seed"
            if needs_data(prune_config(spec)) and arm_of(choice.study_arm) in INHERITING_ARMS:
                key["calibration"] = "drawn per final seed"
            digest = config_digest(key)
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
                "rethink.base_run": base.run_id,
                "base_seed": base.seed,
                "data": "train+val",
            }
            if arm_of(choice.study_arm) == "finetune-random":
                tags["control_seed"] = base.control.config.seed  # the random selection this run fine-tunes
            params = {f"train.{k}": v for k, v in config.to_dict().items()} | {
                "trial": choice.trial if choice.trial is not None else "",
                "train_images": n_train,
            }
            if label:
                params["budget"] = label
                params["budget_epochs"] = own(base, choice.study_arm).epochs(label)
            if (derived := base.arch.get(arm_of(choice.study_arm))) is not None:
                params["arch_widths"] = ",".join(map(str, derived.spec.widths))
                params["arch_params"], params["arch_macs"] = derived.params, derived.macs
            arm = trunk.build(arm_of(choice.study_arm), seed, base)  # on this seed's base
            name, what = f"final:{choice.arm}:{choice.name}:seed{seed}", f"{choice.arm} {choice.name} seed {seed}"
            todo[digest] = (len(pending), base, arm)
            pending.append(Pending(name, tags, params, arm.model, config, what, list(arm.callbacks)))

    order = list(todo.values())
    score = Score(
        tuple(float(arm.forward_macs) for _, _, arm in order),
        tuple(base.inherited if arm.inherits_base else 0.0 for _, base, arm in order),
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
        label = budget_of(choice)
        within = own(base, choice.study_arm).within(label, flops, pipeline) if label else None
        searched = choice.params.get("epochs")
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
                base.run_id if arm_of(choice.study_arm) in INHERITING_ARMS else "",  # pairs by its base
                choice.trial,
                len(split.y_eval),
                label or "",
                within,
                searched if searched is not None and searched != epochs else None,
            )
        )
    return results
