"""Does the proxy's ranking carry over to full scale? Over the confirmed candidates (each study's top trials,
scored on the proxy by the search and at full scale by confirmation), Kendall's tau counted over pairs of
candidates of the same study only (pooling studies would credit the proxy with the gaps between arms),
with a stratified bootstrap interval (candidates resampled within each study)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from study.final.confirm import Confirmation

RESAMPLES = 2000
LEVEL = 0.95


def _tau(groups: list[list[tuple[float, float]]]) -> float:
    """(concordant - discordant) / (concordant + discordant) over within-study pairs; ties count in neither."""
    c = d = 0
    for pairs in groups:
        for (p1, f1), (p2, f2) in combinations(pairs, 2):
            s = np.sign(p1 - p2) * np.sign(f1 - f2)
            c, d = c + (s > 0), d + (s < 0)
    return (c - d) / (c + d) if c + d else math.nan


def proxy_correlation(confirmations: list[Confirmation], seed: int = 0) -> dict | None:
    """tau, its bootstrap interval and counts; None without a proxy (no candidate has a proxy score)."""
    groups = []
    for conf in confirmations:
        pairs = [(c.proxy_acc, c.mean) for c in conf.candidates if math.isfinite(c.proxy_acc) and math.isfinite(c.mean)]
        if len(pairs) >= 2:
            groups.append(pairs)
    if not any(math.isfinite(c.proxy_acc) for conf in confirmations for c in conf.candidates):
        return None
    n_pairs = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    tau = _tau(groups)
    low = high = math.nan
    if n_pairs >= 3:
        rng = np.random.default_rng(seed)
        draws = [_tau([[g[i] for i in rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(RESAMPLES)]
        draws = [t for t in draws if math.isfinite(t)]
        if draws:
            low, high = (float(q) for q in np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    return {
        "kendall_tau": tau,
        "ci_low": low,
        "ci_high": high,
        "level": LEVEL,
        "studies": len(groups),
        "candidates": sum(len(g) for g in groups),
        "pairs": n_pairs,
    }


def proxy_sentence(result: dict | None) -> str:
    if result is None:
        return ""
    tau, lo, hi = result["kendall_tau"], result["ci_low"], result["ci_high"]
    interval = (
        f"{result['level']:.0%} stratified bootstrap interval [{lo:.2f}, {hi:.2f}]"
        if math.isfinite(lo)
        else "too few pairs for an interval"
    )
    if not math.isfinite(tau):
        trust = "no pair of candidates could be ranked (ties or too few confirmed trials)"
    elif math.isfinite(lo) and lo > 0:
        trust = "the proxy's ranking carries over (the interval excludes 0)"
    else:
        trust = "the proxy's ranking is not shown to carry over (the interval reaches 0): read the picks with care"
    return (
        f"Proxy check: Kendall's tau between the proxy's and full-scale validation accuracy of the confirmed "
        f"candidates, over {result['pairs']} pairs within {result['studies']} studies: {tau:.2f} ({interval}); "
        f"{trust}."
    )
