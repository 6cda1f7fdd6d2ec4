"""A spec's tables for what trains: the base recipe, the pruning, the search space every arm shares, the
proxy, and the fixed baselines enqueued on each study. Each validates its own fields; `spec.py` checks the
fields that depend on one another across tables."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from rethink.arms import ARMS
from rethink.augment import AUGMENTATIONS
from rethink.budget import SCHEDULES
from rethink.prune import METHODS, VARIANTS
from rethink.prune.depgraph import CRITERIA, REDUCTIONS
from rethink.train import TrainConfig


def one_of(kind: str, names: Iterable[str]) -> AfterValidator:
    """A field holding a name from a registry; a bad name is reported with the valid ones."""
    valid = tuple(names)

    def check(v: str) -> str:
        if v not in valid:
            raise ValueError(f"unknown {kind} {v!r}; valid names: {', '.join(sorted(valid))}")
        return v

    return AfterValidator(check)


Arm = Annotated[str, one_of("arm", ARMS)]
Augmentation = Annotated[str, one_of("augmentation", AUGMENTATIONS)]
Schedule = Annotated[str, one_of("schedule", SCHEDULES)]
BUILTIN_BASELINES = ("paper", "rewind")  # defined per arm from the base recipe (study/baselines.py)


class StrictTable(BaseModel):
    """A spec table: unknown fields are refused (a typo is an error, not a default), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseTraining(StrictTable):
    """The base model's recipe (TrainConfig fields); defaults are the paper's."""

    epochs: int = Field(160, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Schedule = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule: lr factor at each milestone")
    augment: Augmentation = "crop-flip"
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="adamw: momentum is beta1; weight decay decoupled, on weights of 2+ dimensions only"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    mixup: float = Field(0.0, ge=0, description="Beta α of mixup (timm's recipes: 0.8); 0: off")
    cutmix: float = Field(0.0, ge=0, description="Beta α of CutMix (timm's recipes: 1.0); with mixup, one per batch")
    erasing: float = Field(0.0, ge=0, le=1, description="share of images given a random-erasing box (DeiT 0.25)")
    sparsity: float = Field(0.0, ge=0, description="Network Slimming L1 strength on BN scales")
    sfp_ratio: float | None = Field(
        None, ge=0, lt=1, description="Soft Filter Pruning: share of every conv's filters zeroed after each epoch"
    )

    @model_validator(mode="after")
    def _optimizer_options(self):
        if self.optimizer == "adamw" and self.nesterov:
            raise ValueError("nesterov is SGD's; AdamW has none: set nesterov = false")
        return self

    def train_config(self, seed: int) -> TrainConfig:
        fields = self.model_dump(exclude={"sparsity", "sfp_ratio"})
        return TrainConfig(**fields, seed=seed)


class Pruning(StrictTable):
    method: Annotated[str, one_of("method", METHODS)] = "l1-norm"
    ratio: float | None = Field(None, ge=0, lt=1)
    ratios: tuple[Annotated[float, Field(ge=0, lt=1)], ...] | None = None  # operating points: a setting each
    variant: Annotated[str, one_of("variant", VARIANTS)] | None = None
    min_channels: int = Field(1, ge=0)
    scope: Literal["global", "layer", "local"] = "global"  # local: Torch-Pruning's word for layer
    like: Annotated[str, one_of("method", METHODS)] | None = None  # random: whose widths it copies
    # depgraph (library models, Torch-Pruning): see rethink.prune.PruneConfig
    criterion: Annotated[str, one_of("criterion", CRITERIA)] | None = None
    group_reduction: Annotated[str, one_of("group_reduction", REDUCTIONS)] = "mean"
    max_ratio: float = Field(1.0, gt=0, le=1, description="depgraph: the most of any layer's channels removed")
    round_to: int | None = Field(None, ge=1, description="depgraph: channel counts rounded to a multiple")
    steps: int = Field(1, ge=1, le=100, description="depgraph: pruning steps to reach the ratio")
    ignore: tuple[str, ...] = Field((), description="depgraph: layer names (fnmatch patterns) left unpruned")
    rounds: int = Field(
        1, ge=1, le=30, description="iterative magnitude pruning: prune, rewind to init, retrain; `rounds` times"
    )
    calibration_images: int = Field(
        256, ge=1, description="thinet, depgraph taylor/hessian: training images the criterion is computed on"
    )

    @field_validator("scope")
    @classmethod
    def _one_word_for_per_layer(cls, v):
        return "layer" if v == "local" else v  # one spelling, one digest

    @field_validator("ratios")
    @classmethod
    def _no_empty_list(cls, v):
        return v or None  # [] means no operating points (worker command lines of one level say so)

    @model_validator(mode="after")
    def _ratio_or_variant(self):
        if self.ratios is not None:
            if len(set(self.ratios)) != len(self.ratios):
                raise ValueError(f"prune.ratios repeat: {list(self.ratios)}")
            if self.variant is not None:
                raise ValueError("prune.ratios and prune.variant exclude each other")
        elif self.ratio is None and self.variant is None:
            raise ValueError("give a ratio, a list of ratios or a variant")
        if not METHODS[self.method].inherits and self.variant is None:
            raise ValueError(f"prune.method {self.method!r} names its architecture in prune.variant; give one")
        if self.like is not None and not METHODS[self.like].inherits:
            raise ValueError(f"prune.like {self.like!r} keeps no channels whose widths random could copy")
        graph_only = {"criterion": None, "group_reduction": "mean", "max_ratio": 1.0, "round_to": None, "steps": 1,
                      "ignore": ()}  # fmt: skip
        set_here = [k for k, v in graph_only.items() if getattr(self, k) != v]
        if set_here and self.method != "depgraph" and not (self.method == "random" and self.like == "depgraph"):
            raise ValueError(f"prune.{set_here[0]} is a depgraph option; prune.method is {self.method!r}")
        if self.calibration_images != 256 and self.method not in ("thinet", "depgraph"):
            raise ValueError(
                f"prune.calibration_images is for thinet and depgraph's taylor / hessian; {self.method!r} reads none"
            )
        if self.rounds > 1 and METHODS[self.method].structured:
            raise ValueError(
                f"prune.rounds = {self.rounds}: iterative pruning is for unstructured magnitude pruning; use "
                f"method 'magnitude' (or 'lottery') or rounds = 1"
            )
        return self


class FloatRange(StrictTable):
    low: float
    high: float
    log: bool = True

    @model_validator(mode="after")
    def _non_empty(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"empty or non-finite range [{self.low}, {self.high}]: low must be below high")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class IntRange(StrictTable):
    """Epochs in absolute numbers. `log`: unset means uniform in capped mode (no prior toward short runs)
    and log-uniform in pareto mode (its front spans orders of magnitude of compute)."""

    low: int = Field(ge=1)
    high: int
    log: bool | None = None

    @model_validator(mode="after")
    def _non_empty(self):
        if self.low > self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]: low must not exceed high")
        return self


class CapFraction(StrictTable):
    """Epochs from a fraction of each study's cap up to the cap itself (capped mode): [ceil(low × cap),
    cap], uniform unless `log`. The default searches from a tenth of the cap."""

    of: Literal["cap"]
    low: float = Field(gt=0, le=1)
    log: bool = False

    def bounds(self, cap: int) -> tuple[int, int]:
        return min(cap, max(1, math.ceil(self.low * cap - 1e-9))), cap


EpochRange = IntRange | CapFraction
DEFAULT_EPOCHS = CapFraction(of="cap", low=0.1)


class SearchSpace(StrictTable):
    """The same space for every arm: lr (log), lr schedule shape and augmentation (categorical), epoch
    budget (int, log); optional weight decay and batch size apply to every arm alike."""

    lr: FloatRange = FloatRange(low=1e-3, high=0.3)
    schedule: tuple[Schedule, ...] = Field(SCHEDULES, min_length=1)
    augment: tuple[Augmentation, ...] = Field(AUGMENTATIONS, min_length=1)
    epochs: EpochRange = DEFAULT_EPOCHS
    weight_decay: FloatRange | None = None
    batch_size: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _positive(self):
        if self.lr.low <= 0:
            raise ValueError(f"lr.low must be > 0 (a learning rate), got {self.lr.low}")
        if self.weight_decay is not None and self.weight_decay.low < 0:
            raise ValueError(f"weight_decay.low must be >= 0, got {self.weight_decay.low}")
        return self


class Proxy(StrictTable):
    """Searched trials (and their baselines) run on a cheaper task, with the hpo pruner (successive halving
    on per-epoch validation accuracy) stopping the weak ones; each study's top trials are then confirmed at
    full scale (select.top_k on select.seeds seeds), and the report gives the proxy's rank correlation with
    full scale on them (Kendall's tau)."""

    classes: int | None = Field(None, ge=2, description="a seeded subset of this many classes (default: all)")
    resolution: int | None = Field(None, ge=4, description="image side the proxy trains at (default: the data's)")
    epochs: float = Field(1.0, gt=0, le=1, description="share of each trial's epochs the proxy trains")


class Baseline(StrictTable):
    """A named fixed config enqueued on top of a study's searched trials. `epochs`: an int, or 'E' (base
    epochs), 'B' (Scratch-B epochs) or 'default' (the arm's own). Unset fields take the arm's paper recipe.
    `source` says what it stands for; the report prints it."""

    source: str = ""
    lr: float | None = Field(None, gt=0)
    schedule: Schedule | None = None
    augment: Augmentation | None = None
    epochs: Annotated[int, Field(ge=1)] | Literal["E", "B", "default"] = "default"
    weight_decay: float | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    arms: tuple[Arm, ...] | None = None  # the arms it applies to (default: all)


LITERATURE = Baseline(
    source="the weaker scratch recipe of earlier pruning work (lr 0.01, flip only, E epochs), standing for the "
    "untuned scratch baselines that Liu et al. 2019 say made scratch training look worse than fine-tuning",
    lr=0.01,
    augment="flip",
    epochs="E",
    arms=("scratch-e", "scratch-b"),
)
