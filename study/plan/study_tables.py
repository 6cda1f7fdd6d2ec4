"""A spec's tables for how it is studied and judged: the studies (arms, trials, mode), the confirmation of
their picks, the final evaluation, the pre-registered verdict and Section 5's architecture arms."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .training_tables import Arm, StrictTable


class Study(StrictTable):
    arms: tuple[Arm, ...] = Field(("finetune", "scratch-e", "scratch-b"), min_length=1)
    n_trials: int = Field(8, ge=1, description="searched (sampled) trials per study; baselines come on top")
    # capped: one study per arm and budget judged, epochs searched up to that budget's cap, validation
    # accuracy the one objective. pareto: one study per arm, accuracy and training FLOPs both objectives.
    # fixed-budget: each arm at its paper epochs, the rest searched.
    mode: Literal["capped", "pareto", "fixed-budget"] = "capped"
    sampler: Literal["tpe", "random", "nsga2"] = "tpe"
    seed: int = Field(0, ge=0)
    hpo_pruner: Literal["hyperband", "median", "none"] = "hyperband"
    baselines: tuple[str, ...] = ("paper", "rewind", "literature")

    @field_validator("arms")
    @classmethod
    def _distinct_arms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"arms repeat: {list(v)}")
        return v


class Verdict(StrictTable):
    """The pre-registered analysis: part of the spec's digest and recorded in each study when it is made;
    anything else chosen at report time is labelled post hoc."""

    margin: float = Field(0.5, ge=0, lt=100, description="non-inferiority margin, in accuracy points")
    # one-sided confidence of the non-inferiority bound: 0.975 (alpha = 0.025, the lower end of a two-sided 95%
    # interval), the usual non-inferiority convention
    confidence: float = Field(0.975, gt=0.5, lt=1)
    budgets: tuple[Literal["E", "B", "P"], ...] = Field(("E", "B", "P"), min_length=1)
    min_seeds: int = Field(2, ge=2, description="an arm with fewer final seeds is inconclusive (too few seeds)")
    primary: Literal["1@E", "1@B", "1@P", "2", "3", "4@E", "4@B", "4@P"] = Field(
        "1@B", description="the one primary comparison (claim 1 at budget B: the paper's headline); the rest Holm"
    )
    arch_margin: float = Field(
        0.0, ge=0, lt=100, description="claim 4: accuracy points the pruned architecture must beat uniform by"
    )

    @model_validator(mode="after")
    def _primary_is_judged(self):
        if "@" in self.primary and self.primary[2:] not in self.budgets:
            raise ValueError(
                f"primary {self.primary!r} is a budget the verdicts do not judge (budgets {list(self.budgets)}); "
                f"add {self.primary[2:]!r} to verdict.budgets or name another primary"
            )
        return self

    @property
    def margin_fraction(self) -> float:
        return self.margin / 100


class Select(StrictTable):
    """Picks confirmed before the final evaluation: each study's top_k trials train again on `seeds` more
    seeds (same train/validation split); a row's pick is the best mean validation accuracy. Arms that
    inherit a base (fine-tune, lottery, the random control) confirm on `bases` other bases too, as the final
    evaluation varies the base: confirmation seed i fine-tunes from base i mod `bases`."""

    top_k: int = Field(3, ge=1)
    seeds: int = Field(2, ge=0, description="confirmation seeds per candidate; 0 picks on the search's seed alone")
    bases: int | None = Field(
        None,
        ge=0,
        description="bases (trained on the search split, each its own seed) the inheriting arms confirm on; "
        "default: one per confirmation seed; 0: every confirmation run on the search's base",
    )

    @model_validator(mode="after")
    def _bases_fit_seeds(self):
        if self.bases is not None and self.bases > self.seeds:
            raise ValueError(
                f"select.bases ({self.bases}) exceeds select.seeds ({self.seeds}): each confirmation run "
                f"fine-tunes from one base; set select.bases <= {self.seeds} or raise select.seeds"
            )
        return self

    @property
    def n_bases(self) -> int:
        """Confirmation bases besides the search's: `bases`, by default one per confirmation seed."""
        return self.seeds if self.bases is None else self.bases


class Final(StrictTable):
    seeds: int = Field(3, ge=1)
    share_base: bool = False  # one base for every seed (saves compute; the report says so in a caveat)


class ArchArms(StrictTable):
    """The paper's Section 5 arms (`uniform`, `guided`, `transferred`): how their size is matched to the
    pruned architecture's, and where `transferred` takes its layer pattern from."""

    match: Literal["params", "flops"] = "params"
    tolerance: float = Field(0.01, gt=0, le=0.1, description="largest relative size difference from the pruned one")
    pattern_from: str | None = Field(
        None,
        description="transferred: the spec (shipped name or TOML path) whose pruned architecture's pattern it takes",
    )
