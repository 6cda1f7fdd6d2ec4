"""Statistics of the report: Welch's t-test with the Satterthwaite df, a paired t-test by seed for cells that
share a per-seed base, one-sided non-inferiority, and a Welch-Satterthwaite test of a linear contrast of
independent cells (claim 3's interaction; a paired difference counts as one cell).

A cell's variance never falls below the binomial variance of one run's test accuracy, p(1 - p)/N_test
(`n_test`): on a small test set equal accuracies are a coarse measurement, not certainty."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

TOLERANCE = 1e-12  # accuracy fractions this close are equal: floating-point error decides no verdict
CONFIDENCE = 0.95
POWER = 0.8  # for the sample size a test would need at the observed spread
MAX_SEEDS = 1000  # "seeds needed" stops counting here


def cell_variance(values: np.ndarray, n_test: int | None = None) -> float:
    """The sample variance of a cell's accuracies, floored at the binomial variance p(1 - p)/N_test of one
    run's test accuracy (p smoothed as (p N + 0.5)/(N + 1), so a cell of perfect scores is not certain)."""
    return max(float(values.var(ddof=1)), binomial_floor(float(values.mean()), n_test))


def welch(a: list[float], b: list[float], confidence: float = CONFIDENCE, n_test: int | None = None) -> dict:
    """mean(a) - mean(b) with Welch's t-test (two-sided p of no difference) and its two-sided confidence
    interval at `confidence` (NaN where n < 2)."""
    return contrast([a, b], [1.0, -1.0], confidence, n_test)


@dataclass(frozen=True)
class Paired:
    """Two cells whose runs share a per-seed base, aligned by seed: their per-seed differences are one cell
    (a paired comparison, `scipy.stats.ttest_rel`'s). Its variance is floored at the sum of the two runs'
    binomial variances on the test set."""

    a: tuple[float, ...]
    b: tuple[float, ...]


def binomial_floor(mean: float, n_test: int | None) -> float:
    """p(1 - p)/N_test of one run's test accuracy, p smoothed as (p N + 0.5)/(N + 1); 0 when N is unknown."""
    if not n_test:
        return 0.0
    p = (mean * n_test + 0.5) / (n_test + 1)
    return p * (1 - p) / n_test


def _cell(c, n_test: int | None) -> tuple[float, float, int]:
    """(mean, floored variance, n) of an independent cell or of a Paired one's differences."""
    if isinstance(c, Paired):
        a, b = np.asarray(c.a, float), np.asarray(c.b, float)
        d = a - b
        floor = binomial_floor(float(a.mean()), n_test) + binomial_floor(float(b.mean()), n_test) if len(d) else 0.0
        return (
            (float(d.mean()) if len(d) else math.nan),
            (max(float(d.var(ddof=1)), floor) if len(d) > 1 else 0.0),
            len(d),
        )
    x = np.asarray(c, float)
    return (float(x.mean()) if len(x) else math.nan), (cell_variance(x, n_test) if len(x) > 1 else 0.0), len(x)


def contrast(cells: list, weights: list[float], confidence: float = CONFIDENCE, n_test: int | None = None) -> dict:
    """Σ w_i mean(cell_i) for independent cells (a Paired cell counts as one, its per-seed differences): its
    standard error Σ w_i² s_i²/n_i (s_i² floored, see cell_variance), Satterthwaite's df, the two-sided p of
    a zero contrast, and a two-sided interval."""
    parts = [_cell(c, n_test) for c in cells]
    ns = [n for _, _, n in parts]
    est = float(sum(w * m for w, (m, _, _) in zip(weights, parts, strict=True))) if all(ns) else math.nan
    paired = len(cells) == 1 and isinstance(cells[0], Paired)
    out = {"diff": est, "n_a": ns[0], "n_b": ns[1] if len(ns) > 1 else ns[0] if paired else 0, "n": ns}
    out |= {"p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan, "dof": math.nan}
    out |= {"confidence": confidence, "paired": any(isinstance(c, Paired) for c in cells)}
    out["variance_floor"] = "p(1-p)/N_test" if n_test else "none (N_test unknown)"
    if min(ns) < 2:
        return out
    v = [w * w * var / n for w, (_, var, n) in zip(weights, parts, strict=True)]
    se = math.sqrt(sum(v))
    if se == 0:
        out.update(p_value=1.0 if est == 0 else 0.0, ci_low=est, ci_high=est, se=0.0, dof=math.inf)
        return out
    dof = sum(v) ** 2 / sum(vi**2 / (n - 1) for vi, n in zip(v, ns, strict=True))
    t = stats.t.ppf(0.5 + confidence / 2, dof)
    out.update(
        p_value=float(2 * stats.t.sf(abs(est) / se, dof)), ci_low=est - t * se, ci_high=est + t * se, se=se, dof=dof
    )
    return out


def paired(a: list[float], b: list[float], confidence: float = CONFIDENCE, n_test: int | None = None) -> dict:
    """mean(a - b) over seeds that share a base, as `scipy.stats.ttest_rel` (df n - 1), the variance floored."""
    return contrast([Paired(tuple(a), tuple(b))], [1.0], confidence, n_test)


def one_sided(test: dict, threshold: float, side: str) -> float:
    """p of H0 'estimate <= threshold' (side 'above': evidence it is above) or 'estimate >= threshold'."""
    if math.isnan(test["se"]):
        return math.nan
    if test["se"] == 0:
        above = test["diff"] > threshold + TOLERANCE
        below = test["diff"] < threshold - TOLERANCE
        return 0.0 if (above if side == "above" else below) else 1.0
    t = (test["diff"] - threshold) / test["se"]
    return float(stats.t.sf(t, test["dof"]) if side == "above" else stats.t.cdf(t, test["dof"]))


def needed_n(
    a: list[float],
    b: list[float],
    diff: float,
    margin: float,
    confidence: float,
    n_test: int | None = None,
    pair: bool = False,
) -> int | None:
    """Seeds per arm for the one-sided lower bound to clear -margin with POWER at the observed means and
    spread: the smallest n above the seeds already run with (t_c + t_power) · se(n) <= diff + margin, t at
    the Satterthwaite df of n seeds per arm; None when the observed difference is not above -margin."""
    if diff + margin <= 0:
        return None
    if pair:  # one cell of per-seed differences: se = s_d / sqrt(n), df n - 1
        _, vd, _ = _cell(Paired(tuple(a), tuple(b)), n_test)
        n = np.arange(len(a) + 1, MAX_SEEDS + 1)
        se, dof = np.sqrt(vd / n), n - 1.0
    else:
        va, vb = cell_variance(np.asarray(a, float), n_test), cell_variance(np.asarray(b, float), n_test)
        n = np.arange(max(len(a), len(b)) + 1, MAX_SEEDS + 1)
        se = np.sqrt((va + vb) / n)
        dof = (va + vb) ** 2 / ((va**2 + vb**2) / (n - 1)) if va + vb > 0 else np.full(len(n), np.inf)
    # every candidate n at once (one vectorised quantile call each, not two per n): the first that holds
    holds = (stats.t.ppf(confidence, dof) + stats.t.ppf(POWER, dof)) * se <= diff + margin
    return int(n[holds.argmax()]) if holds.any() else MAX_SEEDS + 1


def noninferiority(
    a: list[float],
    b: list[float],
    margin: float,
    confidence: float = CONFIDENCE,
    n_test: int | None = None,
    min_seeds: int = 2,
    pair: bool = False,
) -> dict:
    """One-sided non-inferiority of a against b: H0 mean(a) - mean(b) <= -margin. The interval is the
    two-sided (2c - 1) one, whose lower end is the one-sided c bound; supported when it clears -margin,
    contradicted when its upper end is below -margin, else inconclusive with the seeds needed. Fewer than
    `min_seeds` seeds in an arm is inconclusive (too few seeds), whatever the interval says. `pair`: a and b
    share a base per seed (aligned by seed), tested paired."""
    if nans := sum(math.isnan(x) for x in (*a, *b)):
        out = {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan, "n_a": len(a)}
        out |= {"n_b": len(b), "margin": margin, "p_noninferiority": math.nan}
        out["verdict"] = f"inconclusive ({nans} run(s) without an accuracy (NaN): no test on them)"
        return out
    if pair:
        test = paired(a, b, 2 * confidence - 1, n_test) | {"margin": margin, "test": "paired t by seed, one-sided"}
    else:
        test = welch(a, b, 2 * confidence - 1, n_test) | {
            "margin": margin,
            "test": "Welch t, Satterthwaite df, one-sided",
        }
    test["p_noninferiority"] = one_sided(test, -margin, "above")
    test["verdict"] = noninferiority_verdict(test, margin)
    if min(len(a), len(b)) < max(2, min_seeds):
        test["verdict"] = f"inconclusive (too few seeds: n={len(a)}, {len(b)}; the spec asks for {min_seeds})"
    elif test["verdict"].startswith("inconclusive") and not math.isnan(test["ci_low"]):
        n = needed_n(a, b, test["diff"], margin, confidence, n_test, pair)
        test["needed_n"] = n
        if n is None:
            test["verdict"] += "; the observed difference is below -margin, so more seeds would not make it supported"
        else:
            seeds = f"about {n}" if n <= MAX_SEEDS else f"more than {MAX_SEEDS:,}"
            test["verdict"] += f"; {seeds} seeds per arm would settle it at this spread ({int(100 * POWER)}% power)"
    return test


def noninferiority_verdict(test: dict, margin: float) -> str:
    """'as good as or better': supported when the CI's lower end clears -margin, contradicted when its
    upper end is below -margin, else inconclusive."""
    if math.isnan(test["ci_low"]):
        return "inconclusive (fewer than 2 seeds)"
    if test["ci_low"] > -margin + TOLERANCE:  # a bound exactly at -margin is not above it
        return "supported"
    if test["ci_high"] < -margin - TOLERANCE:
        return "contradicted"
    return f"inconclusive at this sample size (n={test['n_a']}, {test['n_b']})"


def against_published(
    a: list[float], reference: float, margin: float, confidence: float, n_test: int | None, min_seeds: int = 2
) -> dict:
    """One-sample non-inferiority of a's seeds against a published accuracy (a fraction): H0 mean(a) -
    reference <= -margin. se² = s²/n (s² floored as any cell's) + the reference's binomial variance on the same
    test set size (one model's test score); df n - 1. The published model's seed-to-seed spread is unknown
    and is not in the interval."""
    test = contrast([a], [1.0], 2 * confidence - 1, n_test)
    se = test["se"]
    if not math.isnan(se):
        se = math.sqrt(se**2 + binomial_floor(reference, n_test))
        t = stats.t.ppf(confidence, test["dof"]) if se > 0 else 0.0
        diff = test["diff"] - reference
        test.update(diff=diff, se=se, ci_low=diff - t * se, ci_high=diff + t * se, p_value=math.nan)
    else:
        test["diff"] = test["diff"] - reference
    test |= {"margin": margin, "reference": reference, "n_b": 0}
    test["test"] = "one-sample t (df n - 1) against the published number, one-sided"
    test["p_noninferiority"] = one_sided(test, -margin, "above")
    test["verdict"] = noninferiority_verdict(test, margin)
    if len(a) < max(2, min_seeds):
        test["verdict"] = f"inconclusive (too few seeds: n={len(a)}; the spec asks for {min_seeds})"
    elif test["verdict"].startswith("inconclusive at this sample size"):
        test["verdict"] = f"inconclusive at this sample size (n={len(a)} seeds against one published number)"
    return test
