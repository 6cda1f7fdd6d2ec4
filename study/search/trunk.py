"""The trunk of a spec: the data split, the base model and the pruned model, computed once and found
again by the digest of the config that made them (open_lth's trunk; the arms are its branches)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from rethink.arms import Arm, build_arm, derive_seed, pruned_flops
from rethink.checkpoint import load_cached, save_checkpoint
from rethink.data import Dataset, load_dataset
from rethink.flops import forward_flops, param_count, training_flops
from rethink.models import ArchSpec, build_model
from rethink.proxy import proxy_split
from rethink.prune import PrunedModel, needs_data
from rethink.prune.matched import DerivedArch
from rethink.prune.patterns import Pattern
from rethink.prune.random_control import random_like
from rethink.prune.sfp import SoftFilterPruning
from rethink.prune.slimming import SparsityPenalty
from rethink.splits import Split, normalized, train_val_split
from rethink.train import (
    Callback,
    Runtime,
    TrainConfig,
    make_loaders,
    seed_everything,
    train,
)
from study.plan.arch import base_arch, prune_config, search_trains_base
from study.plan.layout import Budgets, budgets, caps_of
from study.plan.spec import Spec, SpecError
from study.records.progress import PrintProgress
from study.records.tracking import MlflowEpochLogger, RunTree

from .arch_arms import derive_arms, derived_caps, log_derived, transferred_pattern
from .base_file import record_base_file, score
from .rounds import RoundPlace, prune_base, pruned_digest, rounds_from_meta, rounds_meta, rounds_train


@dataclass(eq=False)
class Trunk:
    spec: Spec
    split: Split
    base_spec: ArchSpec
    base_config: TrainConfig
    base_flops: int
    base_val_acc: float
    init_state: dict[str, torch.Tensor]
    pruned: PrunedModel
    pruned_flops: int
    base_run: str
    prune_run: str
    budgets: Budgets  # E, B and pipeline caps; budgets.inherited is what fine-tune and lottery inherit
    control: PrunedModel | None = None  # finetune-random's random selection at the same widths
    arch: dict[str, DerivedArch] = field(default_factory=dict)  # Section 5's arms: their architectures
    arch_caps: dict[str, Budgets] = field(default_factory=dict)  # and their budgets
    pattern: Pattern | None = None  # the transferred arm's layer pattern (another spec's)
    base_trained: bool = True  # False: nothing in the search inherits from the base, so it stays at its init

    def pruned_for(self, arm: str) -> PrunedModel:
        return self.control if arm == "finetune-random" else self.pruned

    @functools.cached_property
    def search_split(self) -> Split:
        """What searched trials and their baselines train on: the spec's proxy of the split, or the split."""
        p = self.spec.proxy
        if p is None or (p.classes is None and p.resolution is None):
            return self.split
        return proxy_split(self.split, p.classes, p.resolution, derive_seed(self.spec.seed, "proxy"))

    def caps_for(self, study_arm: str) -> Budgets:
        """The budgets a study's arm is held to: an architecture arm's own, else the pruned model's."""
        return caps_of(self.budgets, self.arch_caps, study_arm)

    def build(self, arm: str, seed: int, base=None) -> Arm:
        """An arm built on this trunk's architecture and recipe, its data order and fresh inits drawn from
        `seed`; on the search's base and pruned model (a searched trial's, a confirmation run's), or on
        `base`, a final seed's own (anything with `pruned_for`, `init_state` and `pruned_flops`)."""
        source = self if base is None else base
        return build_arm(
            arm,
            source.pruned_for(arm),
            self.base_spec,
            self.base_config,
            self.base_flops,
            seed=seed,
            init_state=source.init_state,
            pruned_macs=source.pruned_flops,
            derived=source.arch.get(arm),
        )


def control_for(spec: Spec, base, base_spec, pruned: PrunedModel, seed: int | None = None) -> PrunedModel | None:
    """The `finetune-random` arm's model: random channels (or weights) at the widths `pruned` has, drawn from
    the stream of `seed` (the spec's seed in the search; each final seed its own, so the final evaluation's
    spread includes the selection's)."""
    if "finetune-random" not in spec.study.arms:
        return None
    draw = derive_seed(spec.seed if seed is None else seed, "random")
    config = replace(prune_config(spec), method="random", like=spec.prune.method, seed=draw)
    return random_like(base, base_spec, pruned, config)


def calibration(split: Split, n: int, seed: int = 0) -> torch.Tensor:
    """ThiNet's calibration sample: `n` training images drawn from `seed`'s stream (the search's trunk keeps
    the default 0 its checkpoints were made with; every other base draws from its own seed)."""
    config = TrainConfig(batch_size=n, augment="none", seed=seed)
    loader, _ = make_loaders(split, config, torch.device("cpu"))
    return next(iter(loader.epoch(0)))[0]


def _reused(tree: RunTree, root: str, kind: str, tags: dict[str, str], path: Path) -> str:
    """A finished run in this spec's tree for a checkpoint made before (e.g. under a smaller n_trials)."""
    made_in = tree.find({"rethink.kind": kind, **tags})
    note = f"checkpoint reused: {path}" + (f" (made in run {made_in})" if made_in else "")
    return tree.record(root, kind, kind, tags | ({"rethink.made_in": made_in} if made_in else {}), note)


def load_data(spec: Spec) -> tuple[Dataset, Split]:
    """The spec's dataset and validation split, validated (called before any run is opened)."""
    ds = load_dataset(spec.dataset, spec.data_root)
    return ds, normalized(train_val_split(ds, spec.val_fraction, spec.seed), spec.normalize, ds.name)


def base_callbacks(spec: Spec) -> list[Callback]:
    """What the base's training adds to the loop: slimming's L1 on BN scales, SFP's filter zeroing. The
    trunk's base and every final-evaluation base train with the same ones."""
    callbacks: list[Callback] = []
    if spec.base.sparsity:
        callbacks.append(SparsityPenalty(spec.base.sparsity))
    if spec.base.sfp_ratio is not None:
        callbacks.append(SoftFilterPruning(spec.base.sfp_ratio))
    return callbacks


def build_trunk(
    spec: Spec,
    tree: RunTree,
    root: str,
    workdir: Path,
    runtime: Runtime,
    train_missing: bool = True,
    data: tuple[Dataset, Split] | None = None,
    pattern: Pattern | None = None,
) -> Trunk:
    """Base and pruned model for `spec`: loaded when their checkpoints exist, else made and recorded.
    `pattern`: the transferred arm's, when it was read elsewhere (a Ray task gets the driver's)."""
    ds, split = data or load_data(spec)
    base_spec = base_arch(spec, ds)
    base_config = spec.base.train_config(spec.seed)
    shape = (base_spec.in_channels, base_spec.input_size, base_spec.input_size)
    base_digest = spec.base_digest()
    base_dir = workdir / f"base-{base_digest}"
    tags = {"rethink.digest": base_digest}
    base_trained = search_trains_base(spec)

    if (base_dir / "model.pt").is_file():
        base, base_ckpt = load_cached(base_dir / "model.pt", base_digest)
        init_state = load_cached(base_dir / "init.pt", base_digest)[1].state_dict
        base_run = tree.find({"rethink.kind": "base", **tags}, root) or _reused(tree, root, "base", tags, base_dir)
        base_val_acc = float(base_ckpt.meta.get("val_acc", float("nan")))
    elif not base_trained:  # no arm inherits: the base only sets the budgets, at its seeded init
        seed_everything(spec.seed)
        base = build_model(base_spec)
        init_state = {k: v.clone() for k, v in base.state_dict().items()}
        base_run, base_val_acc = "", float("nan")
        if train_missing:
            print(f"[base] not trained in the search: no arm of {spec.name} inherits from it", flush=True)
    elif spec.weights and train_missing:  # the file's base: scored and recorded, not trained
        stale = tree.find({"rethink.kind": "base", **tags}, root)
        if stale:
            tree.end(stale, "KILLED", "interrupted before its checkpoint was written; loaded again")
        base, init_state, base_run, base_val_acc = record_base_file(
            spec, base_spec, split, base_config, tree, root, base_dir, tags, shape
        )
    else:
        if not train_missing:
            raise SpecError(
                f"base model {base_dir / 'model.pt'} is missing: run `rethink study {spec.name}` (with the same "
                f"--workdir) first"
            )
        stale = tree.find({"rethink.kind": "base", **tags}, root)
        if stale:
            tree.end(stale, "KILLED", "interrupted before its checkpoint was written; trained again")
        base_run = tree.child(root, "base", "base", tags | {"rethink.runtime": runtime.describe()}, reuse=False)
        tree.log_params(
            base_run,
            {f"train.{k}": v for k, v in base_config.to_dict().items()}
            | {
                "model": base_spec.model,
                "widths": ",".join(map(str, base_spec.widths)),
                "dataset": ds.name,
                "sparsity": spec.base.sparsity,
            }
            | ({"sfp_ratio": spec.base.sfp_ratio} if spec.base.sfp_ratio is not None else {}),
        )
        seed_everything(spec.seed)
        base = build_model(base_spec)
        init_state = {k: v.clone() for k, v in base.state_dict().items()}
        callbacks = [
            *base_callbacks(spec),
            MlflowEpochLogger(base_run),
            PrintProgress(base_config.epochs, "[base] ", every=5),
        ]
        print(f"[base] training {base_spec.model} for {base_config.epochs} epochs on {ds.name}", flush=True)
        start = time.perf_counter()
        history = train(base, split, base_config, callbacks, runtime)
        base.cpu()
        base_val_acc = history.final.eval_acc
        meta = {"train": base_config.to_dict(), "dataset": ds.name, "digest": base_digest, "val_acc": base_val_acc}
        init_model = build_model(base_spec)
        init_model.load_state_dict(init_state)
        save_checkpoint(base_dir / "init.pt", init_model, base_spec, meta=meta | {"epoch": 0})
        save_checkpoint(base_dir / "model.pt", base, base_spec, meta=meta)
        tree.log_metrics(
            base_run,
            {
                "val_acc": base_val_acc,
                "flops_forward": forward_flops(base, shape),
                "params": param_count(base),
                "train_flops": training_flops(forward_flops(base, shape), history.images_seen),
                "wall_seconds": time.perf_counter() - start,
            },
            step=base_config.epochs,
        )
        tree.client.log_artifact(base_run, str(base_dir / "model.pt"), "checkpoint")
        tree.client.log_dict(base_run, base_spec.to_dict(), "arch_spec.json")
        tree.end(base_run)
    base.cpu().eval()
    base_flops = forward_flops(base, shape)
    if base_trained and base_val_acc != base_val_acc:  # a checkpoint that does not say (made by hand, or earlier)
        base_val_acc = score(base, split, base_config)

    pconfig = prune_config(spec)
    prune_digest = pruned_digest(base_digest, pconfig)
    pruned_path = base_dir / f"pruned-{prune_digest}.pt"
    ptags = {"rethink.digest": prune_digest}
    if pruned_path.is_file():
        small, ckpt = load_cached(pruned_path, prune_digest)
        keep = {int(k): v for k, v in ckpt.meta.get("keep", {}).items()}
        pruned = PrunedModel(ckpt.spec, small, pconfig, keep, ckpt.masks)
        rounds = rounds_from_meta(ckpt.meta.get("rounds"))
        prune_run = tree.find({"rethink.kind": "prune", **ptags}, root) or _reused(
            tree, root, "prune", ptags, pruned_path
        )
    else:
        data = calibration(split, pconfig.calibration_images) if needs_data(pconfig) else None
        place = RoundPlace(tree, root, base_dir, "prune")
        pruned, rounds = prune_base(
            base, base_spec, pconfig, data, init_state, base_digest, split, base_config, runtime, place
        )
        prune_run = tree.child(root, "prune", "prune", ptags, reuse=False)
        p_flops = pruned_flops(pruned)
        report = {
            "flops_before": base_flops,
            "flops_after": p_flops,
            "flops_reduction": 1 - p_flops / base_flops,
            "params_before": param_count(base),
            "params_after": param_count(pruned.model, nonzero=not pruned.structured),
        }
        report["params_reduction"] = 1 - report["params_after"] / report["params_before"]
        if rounds:
            report["rounds_train_flops"] = rounds_train(rounds)
        meta = {"keep": {str(k): v for k, v in pruned.keep.items()}, "report": report, "digest": prune_digest}
        if rounds:
            meta["rounds"] = rounds_meta(rounds)
        save_checkpoint(pruned_path, pruned.model, pruned.spec, pruned.masks, meta=meta)
        tree.log_params(
            prune_run,
            {f"prune.{k}": v for k, v in pconfig.to_dict().items()}
            | {"pruned_widths": ",".join(map(str, pruned.spec.widths))},
        )
        tree.log_metrics(prune_run, report)
        tree.client.log_dict(prune_run, pruned.spec.to_dict(), "pruned_arch_spec.json")
        tree.client.log_dict(prune_run, {str(k): v for k, v in pruned.keep.items()}, "kept_channels.json")
        tree.client.log_dict(prune_run, report, "reduction_report.json")
        tree.end(prune_run)
        print(
            f"[prune] {pconfig.method}: FLOPs -{report['flops_reduction']:.1%}, "
            f"params -{report['params_reduction']:.1%}",
            flush=True,
        )
    control = control_for(spec, base, base_spec, pruned)
    p_flops = pruned_flops(pruned)
    caps = budgets(base_config, base_flops, p_flops, len(split.y_train), rounds_train(rounds))
    pattern = pattern or transferred_pattern(spec, workdir)
    arch = derive_arms(spec, base_spec, pruned, pattern)  # refused here, before any arm trains
    if train_missing:  # the driver records them; a worker or task only reads
        log_derived(tree, prune_run, arch)
    arch_caps = derived_caps(caps, arch, base_config, base_flops, len(split.y_train))
    return Trunk(
        spec,
        split,
        base_spec,
        base_config,
        base_flops,
        base_val_acc,
        init_state,
        pruned,
        p_flops,
        base_run,
        prune_run,
        caps,
        control,
        arch,
        arch_caps,
        pattern,
        base_trained,
    )
