"""Statistics of the report: Welch's t-test with the Satterthwaite df, and the non-inferiority verdict."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def welch(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> dict:
    """mean(a) - mean(b) with Welch's t-test and its two-sided confidence interval (NaN where n < 2)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    out = {"diff": diff, "n_a": len(a), "n_b": len(b), "p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        out.update(p_value=1.0 if diff == 0 else 0.0, ci_low=diff, ci_high=diff)
        return out
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = stats.t.ppf(0.5 + confidence / 2, dof)
    out.update(
        p_value=float(stats.ttest_ind(a, b, equal_var=False).pvalue),
        ci_low=diff - t * se,
        ci_high=diff + t * se,
        dof=dof,
    )
    return out


def noninferiority_verdict(test: dict, margin: float) -> str:
    """'as good as or better': supported when the CI's lower end clears -margin, contradicted when its
    upper end is below -margin, else inconclusive."""
    if math.isnan(test["ci_low"]):
        return "inconclusive (fewer than 2 seeds)"
    if test["ci_low"] > -margin:
        return "supported"
    if test["ci_high"] < -margin:
        return "contradicted"
    return f"inconclusive at this sample size (n={test['n_a']}, {test['n_b']})"
