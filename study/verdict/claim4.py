"""Claim 4 (Liu et al. 2019, Section 5): the pruned architecture is better than a uniformly pruned one of the
same size, both trained from scratch with tuned recipes. One-sided superiority per budget: the pruned
architecture's tuned scratch pick minus the uniform architecture's, paired by final seed (each seed prunes
its own base, and its uniform twin is matched to that seed's size), H1: difference > the spec's
`verdict.arch_margin` (0 unless it says otherwise). Guided (and transferred) against uniform, the same way."""

from __future__ import annotations

import math

from study.final.evaluation import FinalResult

from .settings import Analysis
from .stats import one_sided, paired, welch

# The pruned architecture's scratch cell at each budget: Scratch-E at E, Scratch-B at B and P.
PRUNED = {"E": ("scratch-e", "best@E"), "B": ("scratch-b", "best@B"), "P": ("scratch-b", "best@P")}
AGAINST_UNIFORM = (("pruned", ""), ("guided", "g"), ("transferred", "t"))  # (what, id suffix)


def _by_seed(results: list[FinalResult], arm: str, choice: str) -> dict[int, float]:
    return {r.seed: r.test_acc for r in results if r.arm == arm and r.choice == choice}


def superiority(a: dict[int, float], b: dict[int, float], margin: float, confidence: float, n_test) -> dict:
    """a − b over the seeds both have (paired t, df n − 1); Welch when they share fewer than two seeds.
    The verdict: supported when the one-sided lower bound clears the margin; contradicted when the upper
    bound lies below zero (the other architecture is better); else inconclusive."""
    common = sorted(set(a) & set(b))
    c2 = 2 * confidence - 1  # the two-sided interval whose ends are the one-sided bounds at `confidence`
    if len(common) >= 2:
        test = paired([a[s] for s in common], [b[s] for s in common], c2, n_test) | {"pairing": "by seed"}
    else:
        test = welch(list(a.values()), list(b.values()), c2, n_test) | {"pairing": "none (Welch)"}
    test["p_superiority"] = one_sided(test, margin, "above")
    if math.isnan(test["ci_low"]):
        test["verdict"] = "inconclusive (fewer than 2 seeds in a cell)"
    elif test["ci_low"] > margin:
        test["verdict"] = "supported"
    elif test["ci_high"] < 0:
        test["verdict"] = "contradicted: the other architecture is better"
    else:
        test["verdict"] = "inconclusive"
    return test


def claim4(results: list[FinalResult], analysis: Analysis, sizes: dict[str, dict] | None = None) -> list[dict]:
    """One entry per budget judged and per comparison with uniform (pruned, guided, transferred) that the
    spec's arms give; `sizes` (arm -> parameters and MACs of the architecture trained, and the pruned
    one's) is named in each entry."""
    if not any(r.arm == "uniform" for r in results):
        return []
    n_test = max((r.n_test for r in results), default=0) or None
    out = []
    for budget in analysis.budgets:
        uniform = _by_seed(results, "uniform", f"best@{budget}")
        for what, suffix in AGAINST_UNIFORM:
            arm, pick = PRUNED[budget] if what == "pruned" else (what, f"best@{budget}")
            if not any(r.arm == arm for r in results):
                continue
            mine = _by_seed(results, arm, pick)
            name = "the pruned architecture" if what == "pruned" else f"the {what} architecture"
            entry = {
                "claim": f"4{suffix} at budget {budget}: {name} trained from scratch is better than a uniform one "
                f"of the same size",
                "budget": budget,
                "comparison": f"{arm}:{pick} - uniform:best@{budget}",
                "test": "one-sided superiority, paired t by final seed (Welch if unpaired), H1: difference > margin",
                "margin": analysis.arch_margin,
            }
            if sizes:
                entry["sizes"] = {k: sizes[k] for k in ("pruned", what, "uniform") if k in sizes}
            if not mine or not uniform:
                gone = [c for c, v in ((f"{arm}:{pick}", mine), (f"uniform:best@{budget}", uniform)) if not v]
                entry["verdict"] = f"missing: no final runs for {', '.join(gone)}"
            elif min(len(mine), len(uniform)) < analysis.min_seeds:
                entry |= superiority(mine, uniform, analysis.arch_margin, analysis.confidence, n_test)
                entry["verdict"] = f"inconclusive (too few seeds; the spec asks for {analysis.min_seeds})"
            else:
                entry |= superiority(mine, uniform, analysis.arch_margin, analysis.confidence, n_test)
            if analysis.post_hoc:
                entry["verdict"] = "post hoc: " + entry["verdict"]
            out.append(entry)
    return out
