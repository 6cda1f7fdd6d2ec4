"""Which Optuna studies a spec has, which report rows each feeds, the compute budgets that define those
rows, and the baseline trials enqueued on top of each study's searched ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rethink.arms import SCRATCH_ARMS, arm_epochs, default_recipe
from rethink.flops import training_flops
from rethink.train import TrainConfig

from .spec import Spec

LAYOUT = 2  # 2: searched schedules, baselines on top of n_trials, one `scratch` study in pareto mode
BUDGET_SLACK = 1.0001  # float noise: a run of exactly the budget is within it

PAPER_SOURCES = {
    "finetune": "Li et al. 2017 and Liu et al. 2019: fine-tune at lr/100, constant, for 40/160 of E epochs",
    "scratch-e": "Liu et al. 2019 Scratch-E: the base recipe (its lr and step schedule) for E epochs",
    "scratch-b": "Liu et al. 2019 Scratch-B: the base recipe for B epochs (the base's training FLOPs)",
    "lottery": "Frankle & Carbin 2019: the base recipe for E epochs from the base's initial weights",
    "unpruned": "Liu et al. 2019: the base recipe for E epochs (the large model)",
    "finetune-random": "control: the fine-tune paper recipe from randomly selected channels at the method's widths",
}
REWIND_SOURCE = "Renda et al. 2020, learning-rate rewinding: the base's own schedule from its initial lr, E epochs"


def study_arms(spec: Spec) -> list[str]:
    """One study per arm; in pareto mode Scratch-E and Scratch-B are one `scratch` study."""
    out: list[str] = []
    for arm in spec.study.arms:
        key = "scratch" if spec.study.mode == "pareto" and arm in SCRATCH_ARMS else arm
        if key not in out:
            out.append(key)
    return out


def rows_of(spec: Spec, study_arm: str) -> list[str]:
    """The report rows a study feeds: the `scratch` study feeds Scratch-E and Scratch-B."""
    if study_arm == "scratch":
        return [a for a in ("scratch-e", "scratch-b") if a in spec.study.arms]
    return [study_arm]


def study_name(spec: Spec, study_arm: str) -> str:
    return f"{spec.name}.{study_arm}"


@dataclass(frozen=True)
class Budgets:
    """Training-compute caps (MACs) that define the matched comparisons.

    E: E epochs of the pruned model (Scratch-E). B: the base's own training (Scratch-B). P: under the
    pipeline account, the base's training plus E epochs of the pruned model (a fine-tune pipeline that
    retrains for E epochs; scratch gets the same total)."""

    epochs_e: int
    epochs_b: int
    train_e: float
    base_train: float  # what a fine-tune or lottery run inherits: the base's training FLOPs

    @property
    def train_b(self) -> float:
        return self.base_train  # Scratch-B's budget is the base's own training

    @property
    def pipeline_p(self) -> float:
        return self.base_train + self.train_e

    def within(self, label: str, train: float, pipeline: float) -> bool:
        cap, used = {"E": (self.train_e, train), "B": (self.train_b, train), "P": (self.pipeline_p, pipeline)}[label]
        return used <= cap * BUDGET_SLACK


def budgets(base_config: TrainConfig, base_flops: int, pruned_flops: int, n_train: int) -> Budgets:
    e = base_config.epochs
    b = arm_epochs("scratch-b", base_config, base_flops, pruned_flops)
    base_train = training_flops(base_flops, e * n_train)
    train_e = training_flops(pruned_flops, e * n_train)
    return Budgets(e, b, train_e, base_train)


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
            if study_arm in ("finetune", "finetune-random"):
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
