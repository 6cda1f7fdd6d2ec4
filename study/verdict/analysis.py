"""The analysis of a set of per-seed results, shared by the report and `rethink verdict`: the claims'
verdicts (primary and Holm-adjusted secondaries) and the primary verdict in one sentence."""

from __future__ import annotations

from study.final.evaluation import FinalResult

from .claims import Analysis, claims
from .family import primary_sentence


def analyse(
    results: list[FinalResult], analysis: Analysis, mode: str, bands: list[dict] | None = None
) -> tuple[list[dict], str]:
    verdicts = claims(results, analysis, mode, bands)
    return verdicts, primary_sentence(verdicts, analysis)


def infer_mode(results: list[FinalResult]) -> str:
    """The study mode a table of picks comes from: pareto has fine-tune best@B, capped has budget picks
    (best@E, best@B) without it, fixed-budget has plain `best` picks."""
    picks = {(r.arm, r.choice) for r in results}
    if ("finetune", "best@B") in picks:
        return "pareto"
    return "capped" if any("@" in p for _, p in picks) else "fixed-budget"
