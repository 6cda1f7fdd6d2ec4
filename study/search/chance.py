"""A base that did not learn: when the base's validation accuracy is not clearly above chance (a one-sided
binomial test against 1/classes on the validation images), every comparison built on it means nothing.
The study stops before the arms unless told to go on; the report says so at the top either way."""

from __future__ import annotations

import math

from scipy.stats import binomtest

from study.plan.spec import SpecError

ALPHA = 1e-3  # the base must beat chance at this one-sided level


def chance_problem(val_acc: float, n_val: int, classes: int) -> str | None:
    """Why the base is not clearly above chance (None when it is)."""
    if n_val <= 0 or classes < 2:
        return None
    if math.isnan(val_acc):
        return "the base model's validation accuracy is unknown"
    correct = round(val_acc * n_val)
    p = binomtest(correct, n_val, 1 / classes, alternative="greater").pvalue
    if p < ALPHA:
        return None
    return (
        f"the base model's validation accuracy {100 * val_acc:.1f}% ({correct} of {n_val}) is not clearly above "
        f"chance ({100 / classes:.1f}% for {classes} classes; one-sided binomial p = {p:.2g}, needs < {ALPHA:g})"
    )


def check_base_learned(name: str, val_acc: float, n_val: int, classes: int, allow: bool) -> str | None:
    """Refuse (one line, before any arm trains) a base at chance; with `allow`, return the report's caveat."""
    problem = chance_problem(val_acc, n_val, classes)
    if problem is None:
        return None
    if not allow:
        raise SpecError(
            f"spec {name}: {problem}, so no arm's result would mean anything: train the base longer (base.epochs) "
            f"or at another lr, or check the data; --allow-chance-base goes on anyway and the report says so"
        )
    return f"{problem}; the study went on (--allow-chance-base): read no verdict as evidence"
