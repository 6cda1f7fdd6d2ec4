"""A spec's cost as a record: the training compute of each stage, the budgets it implies, and the form it is
kept in on disk (`kept.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from rethink.data import DatasetShape

from .layout import Budgets


@dataclass(frozen=True)
class Stage:
    """One stage of a spec's compute: how many training runs and their MACs in all."""

    name: str
    runs: int
    macs: float


@dataclass(frozen=True)
class Cost:
    spec: str
    data: DatasetShape
    base_macs: int  # forward MACs of one image, unpruned
    pruned_macs: int  # the same, pruned (non-zero weights for weight-level methods)
    exact: bool  # False: the pruned architecture is an estimate (the method decides it from trained weights)
    budgets: Budgets
    stages: tuple[Stage, ...]
    problems: tuple[str, ...] = ()  # why the search could not reach its budgets (refused once the base is pruned)

    @property
    def total(self) -> float:
        return sum(s.macs for s in self.stages)

    @property
    def runs(self) -> int:
        return sum(s.runs for s in self.stages)

    def how_pruned(self) -> str:
        if self.exact:
            return "exact: the method's architecture does not depend on the trained weights"
        return (
            "estimated: the method picks its widths (or weights) from the trained base; here from an untrained "
            "one (slimming: random BN scales, magnitude: the init's weights), so B's epochs are estimates too"
        )


def cost_from(d: dict) -> Cost:
    """A Cost from its `asdict` form, as kept on disk."""
    return Cost(
        **d
        | {
            "data": DatasetShape(**d["data"]),
            "budgets": Budgets(**d["budgets"]),
            "stages": tuple(Stage(**s) for s in d["stages"]),
            "problems": tuple(d["problems"]),
        }
    )
