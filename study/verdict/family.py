"""The family of verdicts: one primary comparison tested alone at the spec's level, every other verdict
secondary with its one-sided p Holm-adjusted across the family, and the primary verdict in one sentence."""

from __future__ import annotations

import math

from .settings import Analysis


def comparison_id(entry: dict) -> str:
    """'1@E', '1@B', '1@P', '2', '3', '4@B' (4g@B, 4t@B) or 'control': what [verdict] primary names."""
    claim = entry["claim"]
    if claim.startswith("1 at budget"):
        return f"1@{entry['budget']}"
    if claim[:1] == "4":  # 4@B: pruned vs uniform; 4g@B, 4t@B: guided, transferred vs uniform
        return f"{claim.split(' at budget')[0]}@{entry['budget']}"
    return claim.split(":")[0] if claim[:1] in "23" else "control"


def family_p(entry: dict) -> float | None:
    """The one-sided p of an entry's hypothesis, for the Holm family; claim 3 takes the largest of its parts'
    (an intersection-union test: supported only when every part is). None: no separate test (a repeat of
    another comparison's runs, a missing pick; no p where an arm has fewer than 2 seeds)."""
    if "same_as" in entry or entry["verdict"].removeprefix("post hoc: ").startswith("missing"):
        return None
    if "parts" in entry:
        ps = [part.get("p_noninferiority", part.get("p_one_sided", math.nan)) for part in entry["parts"].values()]
        return max(ps) if ps and all(p == p for p in ps) else None
    p = entry.get("p_noninferiority", entry.get("p_superiority", entry.get("p_value", math.nan)))
    return p if p == p else None


def holm(ps: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: sorted ascending, p_(i) × (m - i + 1), kept monotone, capped at 1."""
    adjusted, running = {}, 0.0
    for i, key in enumerate(sorted(ps, key=lambda k: ps[k])):
        running = max(running, min(1.0, (len(ps) - i) * ps[key]))
        adjusted[key] = running
    return adjusted


def assign_roles(entries: list[dict], analysis: Analysis) -> list[dict]:
    """The spec's primary comparison is tested at the spec's level alone; every other claim is secondary:
    its one-sided p is Holm-adjusted across the secondary family, and a 'supported' whose adjusted p does not
    clear 1 - confidence is reported as inconclusive after the adjustment. The random-selection control is a
    two-sided check of the method, not a claim: it stays outside the family (role `control`), unadjusted."""
    alpha = 1 - analysis.confidence
    family = {}
    for e in entries:
        e["comparison_id"] = comparison_id(e)
        e["role"] = "primary" if e["comparison_id"] == analysis.primary else "secondary"
        if e["comparison_id"] == "control" and e["role"] != "primary":
            e["role"] = "control"  # a two-sided check of the method, not a claim: outside the one-sided family
            continue
        if e["role"] == "secondary" and (p := family_p(e)) is not None:
            family[e["comparison_id"]] = p
    adjusted = holm(family)
    for e in entries:
        if e["comparison_id"] not in adjusted:
            continue
        e["p_holm"], e["holm_family"] = adjusted[e["comparison_id"]], len(adjusted)
        prefix = "post hoc: " if e["verdict"].startswith("post hoc: ") else ""
        if e["verdict"].removeprefix(prefix) == "supported" and e["p_holm"] >= alpha:
            e["verdict"] = (
                f"{prefix}inconclusive after the Holm adjustment (adjusted p = {e['p_holm']:.3g} over "
                f"{len(adjusted)} secondary tests; unadjusted: supported)"
            )
    return entries


def primary_sentence(entries: list[dict], analysis: Analysis) -> str:
    """The primary verdict in one plain sentence: what was compared, at which budget, the estimate and
    interval, and what it means for the claim."""
    found = [e for e in entries if e.get("role") == "primary"]
    if not found:
        return f"Primary comparison ({analysis.primary}): missing: the spec's arms do not give it."
    e = found[0]
    what = e.get("comparison", e["claim"])
    if "diff" not in e or e["diff"] != e["diff"]:
        return f"Primary comparison ({analysis.primary}, {what}): {e['verdict']}."
    level = 100 * analysis.confidence
    verdict = e["verdict"].removeprefix("post hoc: ")
    if e["comparison_id"].startswith("4"):  # superiority: the margin is claim 4's own
        margin = e.get("margin", analysis.arch_margin)
        meaning = (
            "the pruned architecture beats its same-size twin by more than the margin"
            if verdict == "supported"
            else "the same-size twin is better"
            if verdict.startswith("contradicted")
            else "the data do not settle the claim at this margin"
        )
    else:
        margin = analysis.margin
        meaning = {
            "supported": "the claim holds at this margin",
            "contradicted": "the claim fails: the pruned model trained this way is worse by more than the margin",
        }.get(verdict, "the data do not settle the claim at this margin")
    return (
        f"Primary comparison ({analysis.primary}): {what} differs by {100 * e['diff']:+.2f} pp "
        f"(one-sided {level:.1f}% lower bound {100 * e['ci_low']:+.2f} pp, margin {100 * margin:.2f} pp): "
        f"{e['verdict']}; {meaning}."
    )
