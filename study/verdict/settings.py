"""The analysis the verdicts follow (the spec's pre-registered [verdict], or a post-hoc one): its own module,
so that the claims and the family that adjusts them both read it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Analysis:
    """The analysis the verdicts follow: the spec's pre-registered [verdict], unless overridden post hoc."""

    margin: float  # accuracy fraction
    confidence: float
    budgets: tuple[str, ...]
    post_hoc: tuple[str, ...] = field(default=())  # why this analysis is post hoc (empty: pre-registered)
    min_seeds: int = 2  # an arm with fewer final seeds is "inconclusive (too few seeds)"
    primary: str = "1@B"  # the one primary comparison; every other verdict is secondary, Holm-adjusted
    arch_margin: float = 0.0  # claim 4: how much (accuracy fraction) the pruned architecture must beat uniform by

    def describe(self) -> str:
        what = f"margin {100 * self.margin:.2f} pp, confidence {self.confidence}, budgets {', '.join(self.budgets)}"
        if self.post_hoc:
            return f"POST HOC ({'; '.join(self.post_hoc)}): {what}"
        return f"pre-registered in the spec's [verdict] table: {what}"
