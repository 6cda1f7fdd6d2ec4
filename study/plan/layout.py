"""Which Optuna studies a spec has, which report rows each feeds, the compute budgets that define those
rows, and the baseline trials enqueued on top of each study's searched ones."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from rethink.arms import ARCH_ARMS, SCRATCH_ARMS, arm_epochs, default_recipe
from rethink.flops import training_flops
from rethink.train import TrainConfig

from .spec import Spec, SpecError
from .training_tables import CapFraction

LAYOUT = 2  # 2: searched schedules, baselines on top of n_trials, one `scratch` study in pareto mode
BUDGET_SLACK = 1.0001  # float noise: a run of exactly the budget is within it

PAPER_SOURCES = {
    "finetune": "Li et al. 2017 and Liu et al. 2019: fine-tune at lr/100, constant, for 40/160 of E epochs",
    "scratch-e": "Liu et al. 2019 Scratch-E: the base recipe (its lr and step schedule) for E epochs",
    "scratch-b": "Liu et al. 2019 Scratch-B: the base recipe for B epochs (the base's training FLOPs)",
    "lottery": "Frankle & Carbin 2019: the base recipe for E epochs from the base's initial weights",
    "unpruned": "Liu et al. 2019: the base recipe for E epochs (the large model)",
    "finetune-random": "control: the fine-tune paper recipe from randomly selected channels at the method's widths",
    "arch": "as Scratch-E/B's paper recipe: the base recipe for E epochs (E study) or B epochs of this architecture",
}
REWIND_SOURCE = "Renda et al. 2020, learning-rate rewinding: the base's own schedule from its initial lr, E epochs"


def study_arms(spec: Spec) -> list[str]:
    """The studies of a spec, by key. Capped mode: one per arm and budget, `ARM@CAP` (Scratch-B at B, and
    at P when the verdicts judge P; every other arm at E). Pareto mode: one per arm, with Scratch-E and
    Scratch-B as one `scratch` study. Fixed-budget mode: one per arm."""
    out: list[str] = []
    for arm in spec.study.arms:
        if spec.study.mode == "capped":
            if arm in ARCH_ARMS:  # Section 5's architectures: at every budget claim 4 is judged at
                out += [f"{arm}@{c}" for c in ("E", "B", "P") if c in spec.verdict.budgets]
                continue
            caps = ("B", "P") if arm == "scratch-b" else ("E",)
            out += [f"{arm}@{c}" for c in caps if c != "P" or "P" in spec.verdict.budgets]
            continue
        key = "scratch" if spec.study.mode == "pareto" and arm in SCRATCH_ARMS else arm
        if key not in out:
            out.append(key)
    return out


def arm_of(study_arm: str) -> str:
    """The arm a study trains (`scratch-b@P` -> `scratch-b`; pareto's `scratch` builds as itself)."""
    return study_arm.partition("@")[0]


def cap_of(study_arm: str) -> str | None:
    """The budget a capped study is searched under (E, B or P); None in the other modes."""
    return study_arm.partition("@")[2] or None


def rows_of(spec: Spec, study_arm: str) -> list[str]:
    """The report rows a study feeds: the `scratch` study feeds Scratch-E and Scratch-B."""
    if study_arm == "scratch":
        return [a for a in ("scratch-e", "scratch-b") if a in spec.study.arms]
    return [arm_of(study_arm)]


def study_name(spec: Spec, study_arm: str) -> str:
    return f"{spec.name}.{study_arm}"


@dataclass(frozen=True)
class Budgets:
    """Training-compute caps (MACs) that define the matched comparisons.

    E: E epochs of the pruned model (Scratch-E). B: the base's own training (Scratch-B). P: under the
    pipeline account, everything a fine-tune pipeline spends: the base's training, the pruning method's own
    (iterative pruning's retraining rounds), plus E epochs of the pruned model; scratch gets the same total."""

    epochs_e: int
    epochs_b: int | None  # None before the pruned model is known (the checks made on load)
    train_e: float
    base_train: float  # the base's training FLOPs
    prune_train: float = 0.0  # the pruning's own training after the base (iterative rounds), FLOPs
    epochs_prune: int = 0  # the same in epochs of the pruned model
    # An architecture arm (Section 5) trains another network of the pruned one's size: its E is E epochs of
    # itself, but P stays fine-tune's pipeline (E epochs of the pruned model), and its epochs are its own.
    finetune_e: float | None = None
    epochs_p: int | None = None

    @property
    def train_b(self) -> float:
        return self.base_train  # Scratch-B's budget is the base's own training (the paper's)

    @property
    def inherited(self) -> float:
        """What a fine-tune or lottery run inherits: the base's training and the pruning's."""
        return self.base_train + self.prune_train

    @property
    def pipeline_p(self) -> float:
        return self.inherited + (self.train_e if self.finetune_e is None else self.finetune_e)

    def epochs(self, label: str) -> int | None:
        """A budget in epochs of the network trained: E, B, or P (E + B + the pruning's own epochs)."""
        b = self.epochs_b
        p = self.epochs_p if self.epochs_p is not None else None if b is None else self.epochs_e + b + self.epochs_prune
        return {"E": self.epochs_e, "B": b, "P": p}[label]

    def within(self, label: str, train: float, pipeline: float) -> bool:
        cap, used = {"E": (self.train_e, train), "B": (self.train_b, train), "P": (self.pipeline_p, pipeline)}[label]
        return used <= cap * BUDGET_SLACK


def budgets(
    base_config: TrainConfig, base_flops: int, pruned_flops: int, n_train: int, prune_train: float = 0.0
) -> Budgets:
    """The caps of one setting; `prune_train`: the pruning's own training MACs after the base (iterative)."""
    e = base_config.epochs
    b = arm_epochs("scratch-b", base_config, base_flops, pruned_flops)
    if b < 1:
        raise SpecError(
            f"Scratch-B would train {b} epochs: the pruned model's {pruned_flops:.3g} MACs per image are "
            f"{pruned_flops / base_flops:.2f}x the base's {base_flops:.3g}; prune to a smaller model"
        )
    base_train = training_flops(base_flops, e * n_train)
    train_e = training_flops(pruned_flops, e * n_train)
    epochs_prune = round(prune_train / training_flops(pruned_flops, n_train)) if prune_train else 0
    return Budgets(e, b, train_e, base_train, prune_train, epochs_prune)


def arch_budgets(caps: Budgets, base_config: TrainConfig, base_flops: int, arch_flops: int, n_train: int) -> Budgets:
    """The same budgets for an architecture arm of `arch_flops` forward MACs: E epochs of itself; B the base's
    training (its Scratch-B epochs); P fine-tune's pipeline, in whole epochs of itself (never above P)."""
    e = caps.epochs_e
    per_epoch = training_flops(arch_flops, n_train)
    b = arm_epochs("scratch-b", base_config, base_flops, arch_flops)
    epochs_p = int(caps.pipeline_p / per_epoch * BUDGET_SLACK) if caps.epochs_b is not None else None
    finetune_e = caps.train_e if caps.finetune_e is None else caps.finetune_e
    return replace(caps, epochs_b=b, train_e=e * per_epoch, finetune_e=finetune_e, epochs_p=epochs_p)


def seed_epochs(epochs: int, label: str | None, search: Budgets, own: Budgets, tuned: bool) -> int:
    """A scratch run's epochs under budget `label` on a final seed whose pruned model has other FLOPs than
    the search's (so another B and P in epochs): a tuned pick keeps its fraction of the budget, a run of the
    whole budget (the paper's Scratch-B) takes the seed's whole budget, and a fixed-epoch baseline keeps its
    epochs; never more than the seed's own cap. Budget E does not depend on the pruned FLOPs."""
    if label not in ("B", "P"):
        return epochs
    cap, mine = search.epochs(label), own.epochs(label)
    if cap is None or mine is None or cap == mine:
        return epochs
    if epochs >= cap:
        return mine
    return max(1, min(mine, round(epochs * mine / cap) if tuned else epochs))


@dataclass(frozen=True)
class BaselineTrial:
    name: str  # e.g. paper, rewind, literature; paper@E and paper@B in the pareto scratch study
    params: dict[str, Any]
    source: str
    row: str | None = None  # the one report row it belongs to (paper@E: scratch-e), else every row it fits


def _params(
    spec: Spec, recipe: TrainConfig, epochs: int | None, lr: float, schedule: str, augment: str, wd=None, bs=None
) -> dict[str, Any]:
    """Values for the space's parameters, in the order `suggest` asks for them."""
    params: dict[str, Any] = {"lr": lr, "schedule": schedule, "augment": augment}
    if epochs is not None:
        params["epochs"] = int(epochs)
    if spec.space.weight_decay is not None:
        params["weight_decay"] = recipe.weight_decay if wd is None else wd
    if spec.space.batch_size is not None:
        params["batch_size"] = bs or recipe.batch_size
    return params


def baseline_trials(spec: Spec, study_arm: str, budgets_: Budgets, base_config: TrainConfig) -> list[BaselineTrial]:
    """The named baselines of one study: `paper` (the arm's paper recipe), `rewind` (fine-tune only) and the
    spec's own ([baselines.NAME], for the arms it names). In fixed-budget mode epochs are the arm's."""
    fixed = spec.study.mode == "fixed-budget"
    rows = rows_of(spec, study_arm)
    e, b = budgets_.epochs_e, budgets_.epochs_b
    if rows[0] in ARCH_ARMS:
        return _arch_baselines(spec, study_arm, rows[0], e, b, base_config)
    out: list[BaselineTrial] = []
    for name in spec.study.baselines:
        if name == "paper":
            for row in rows:
                r = default_recipe(row, base_config, 1, 1)  # epochs set below from the budgets
                epochs = b if row == "scratch-b" else r.epochs if row.startswith("finetune") else e
                label = f"paper@{'B' if row == 'scratch-b' else 'E'}" if study_arm == "scratch" else "paper"
                p = _params(spec, r, None if fixed else epochs, r.lr, r.schedule, r.augment)
                out.append(BaselineTrial(label, p, PAPER_SOURCES[row], row if study_arm == "scratch" else None))
        elif name == "rewind":
            if arm_of(study_arm) in ("finetune", "finetune-random"):
                r = base_config
                out.append(
                    BaselineTrial(
                        name, _params(spec, r, None if fixed else e, r.lr, r.schedule, r.augment), REWIND_SOURCE
                    )
                )
        else:
            bl = spec.baselines[name]
            if bl.arms is not None and not set(bl.arms) & set(rows):
                continue
            r = default_recipe(rows[0], base_config, 1, 1)
            own = b if rows[0] == "scratch-b" else r.epochs if rows[0].startswith("finetune") else e
            ep = {"E": e, "B": b, "default": own}[bl.epochs] if isinstance(bl.epochs, str) else bl.epochs
            p = _params(
                spec,
                r,
                None if fixed else ep,
                bl.lr or r.lr,
                bl.schedule or r.schedule,
                bl.augment or r.augment,
                bl.weight_decay,
                bl.batch_size,
            )
            out.append(BaselineTrial(name, p, bl.source or f"[baselines.{name}] of the spec"))
    return out


def _arch_baselines(spec: Spec, study_arm: str, arm: str, e: int, b: int | None, base: TrainConfig):
    """An architecture arm's studies get what Scratch-E/B's get, so that claim 4 compares equally searched
    arms: the paper recipe (the base's) at E epochs in the E study, at B epochs in the B and P studies; in
    pareto mode both in its one study, the B one a trial of the study only (row `ARM@B`, no report row)."""
    if "paper" not in spec.study.baselines:
        return []
    source = PAPER_SOURCES["arch"]
    if spec.study.mode == "pareto":
        return [
            BaselineTrial("paper@E", _params(spec, base, e, base.lr, base.schedule, base.augment), source, arm),
            BaselineTrial("paper@B", _params(spec, base, b, base.lr, base.schedule, base.augment), source, f"{arm}@B"),
        ]
    epochs = e if cap_of(study_arm) == "E" else b
    return [BaselineTrial("paper", _params(spec, base, epochs, base.lr, base.schedule, base.augment), source)]


def known_on_load(spec: Spec) -> Budgets:
    """The budgets a spec fixes before its base is trained: E only (B and P need the pruned model)."""
    return Budgets(spec.base.epochs, None, math.nan, math.nan)


def epoch_range(spec: Spec, study_arm: str, budgets_: Budgets) -> tuple[int, int, bool] | None:
    """(low, high, log) of the epochs a study searches; None in fixed-budget mode (the arm's own) or while
    its cap is unknown. Capped: up to the study's cap, uniform unless the spec says log."""
    e = spec.space.epochs
    if spec.study.mode == "fixed-budget":
        return None
    if spec.study.mode == "pareto":
        return e.low, e.high, True if e.log is None else e.log
    cap = budgets_.epochs(cap_of(study_arm))
    if cap is None:
        return None
    if isinstance(e, CapFraction):
        return *e.bounds(cap), e.log
    return e.low, min(e.high, cap), bool(e.log)


def judged_caps(spec: Spec, study_arm: str) -> list[str]:
    """The budgets a study's trials must reach: its cap (capped), or every budget its rows are judged at."""
    if spec.study.mode == "capped":
        return [cap_of(study_arm)]
    rows = rows_of(spec, study_arm)
    need = {"E"} if set(rows) & {"finetune", "scratch-e", "lottery", "finetune-random"} else set()
    if "scratch-b" in rows:
        need |= {b for b in ("B", "P") if b in spec.verdict.budgets}
    if set(rows) & set(ARCH_ARMS):
        need |= set(spec.verdict.budgets)
    return sorted(need)


def caps_of(budgets_: Budgets, arch: dict[str, Budgets] | None, study_arm: str) -> Budgets:
    """The budgets of a study's arm: an architecture arm's own (`arch`, by arm), else the pruned model's."""
    return (arch or {}).get(arm_of(study_arm), budgets_)


def reach_problems(spec: Spec, budgets_: Budgets, arch: dict[str, Budgets] | None = None) -> list[str]:
    """Why the space cannot serve the budgets it is judged at: an epoch range that stops short of a
    budget, or a baseline outside its study's space (lr, weight decay, epochs). Budgets still unknown
    (None) are left for the check made once the pruned model exists. `arch`: the architecture arms' own."""
    space, out = spec.space, []
    if spec.study.mode == "fixed-budget":
        return _baseline_problems(spec, budgets_, arch)
    e = space.epochs
    for study_arm in study_arms(spec):
        for label in judged_caps(spec, study_arm):
            cap = caps_of(budgets_, arch, study_arm).epochs(label)
            if cap is None or isinstance(e, CapFraction):
                continue
            if e.high < cap:
                out.append(
                    f"space.epochs.high = {e.high} cannot reach budget {label} ({cap} epochs of the pruned model, "
                    f"study {study_name(spec, study_arm)}): set space.epochs.high >= {cap}"
                    + (
                        ', or give epochs = { of = "cap", low = 0.1 } (a fraction of each study\'s cap)'
                        if spec.study.mode == "capped"
                        else ""
                    )
                )
            elif e.low > cap and spec.study.mode == "capped":  # pareto: picks within that budget are missing
                out.append(f"space.epochs.low = {e.low} lies above budget {label} ({cap} epochs): set it <= {cap}")
    return list(dict.fromkeys(out)) + _baseline_problems(spec, budgets_, arch)


def _outside(value: float, low: float, high: float) -> bool:
    return value < low * (1 - 1e-9) or value > high * (1 + 1e-9)


def _baseline_problems(spec: Spec, budgets_: Budgets, arch: dict[str, Budgets] | None = None) -> list[str]:
    space, out = spec.space, []
    if not spec.study.baselines:
        return out
    base_config = spec.base.train_config(spec.seed)
    for study_arm in study_arms(spec):
        own = caps_of(budgets_, arch, study_arm)
        rng = epoch_range(spec, study_arm, own)
        for b in baseline_trials(spec, study_arm, own, base_config):
            where = f"baseline {b.name!r} of study {study_name(spec, study_arm)}"
            lr = b.params["lr"]
            if _outside(lr, space.lr.low, space.lr.high):
                fix = f"space.lr.low <= {lr:g}" if lr < space.lr.low else f"space.lr.high >= {lr:g}"
                out.append(f"{where}: lr {lr:g} lies outside space.lr [{space.lr.low:g}, {space.lr.high:g}]; set {fix}")
            wd = b.params.get("weight_decay")
            if wd is not None and _outside(wd, space.weight_decay.low, space.weight_decay.high):
                out.append(
                    f"{where}: weight_decay {wd:g} lies outside space.weight_decay "
                    f"[{space.weight_decay.low:g}, {space.weight_decay.high:g}]; widen it to include {wd:g}"
                )
            ep = b.params.get("epochs")
            if rng is not None and ep is not None and not rng[0] <= ep <= rng[1]:
                field = "space.epochs.low" if ep < rng[0] else "space.epochs.high"
                fix = f"{field} {'<=' if ep < rng[0] else '>='} {ep}"
                if isinstance(space.epochs, CapFraction) and ep < rng[0]:
                    low = math.floor(1000 * ep / (rng[1] or 1)) / 1000 or ep / (rng[1] or 1)  # rounded down: it fits
                    fix = f"space.epochs.low <= {low:g} (of the cap)"
                elif ep > rng[1] and spec.study.mode == "capped":
                    fix = f"its epochs <= {rng[1]} (the study's cap)"
                out.append(f"{where}: {ep} epochs lie outside the study's epochs [{rng[0]}, {rng[1]}]; set {fix}")
    return out


def check_reach(spec: Spec, budgets_: Budgets, where: str = "", arch: dict[str, Budgets] | None = None) -> None:
    """Refuse, in one line, a spec whose space cannot serve its budgets (see reach_problems); the first
    three problems are named, and how many more there are."""
    if problems := reach_problems(spec, budgets_, arch):
        more = f"; and {len(problems) - 3} more like these" if len(problems) > 3 else ""
        raise SpecError(f"{where}{'; '.join(problems[:3])}{more} (a spec is judged at budgets its search must reach)")
