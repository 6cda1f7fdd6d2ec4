"""Scratch against a published fine-tuned model, for a spec without a fine-tune arm (a predefined architecture:
the pruning method is not implemented here, its authors released the fine-tuned model). An external reference,
not one of the paper's claims: outside the Holm family and never the primary."""

from __future__ import annotations

from study.final.evaluation import FinalResult
from study.plan.paper import Published

from .claims import CAPPED, FIXED, MATCHED, accs, has_arm, n_test_of, runs_of
from .settings import Analysis
from .stats import against_published

CAVEAT = (
    "external reference: one model from another pipeline (its authors' framework, data pipeline and evaluation), "
    "fine-tuned by them and not tuned here while scratch was searched; its seed-to-seed spread is unknown and "
    "not in the interval. Descriptive: outside the Holm family, never the primary"
)


def external_claims(
    results: list[FinalResult], analysis: Analysis, mode: str, finetune: Published | None
) -> list[dict]:
    """Per judged budget, the tuned scratch pick claim 1 would use against the published fine-tuned number."""
    if finetune is None or has_arm(results, "finetune"):
        return []
    table = {"pareto": MATCHED, "capped": CAPPED, "fixed-budget": FIXED}[mode]
    out, seen = [], {}
    for budget in analysis.budgets:
        if budget not in table:
            continue
        (arm, pick), _, account = table[budget]
        if not has_arm(results, arm):
            continue
        entry = {
            "claim": f"external at budget {budget}: tuned {arm} ({pick}) is as good as or better than the published "
            f"fine-tuned model ({finetune.text()}, {finetune.source})",
            "budget": budget,
            "account": account,
            "comparison": f"{arm}:{pick} - published fine-tuned {finetune.text()}",
            "comparison_id": f"ext@{budget}",
            "role": "external",
            "caveat": CAVEAT,
        }
        scratch = accs(results, arm, pick)
        if not scratch:
            entry["verdict"] = f"missing: no final runs for {arm}:{pick} (no trial within that budget)"
        elif (runs := runs_of(results, arm, pick)) in seen:
            entry |= {"same_as": seen[runs], "verdict": f"same runs as budget {seen[runs]}: not a separate test"}
        else:
            seen[runs] = budget
            reference = finetune.mean / 100
            n_test = n_test_of(results)
            entry |= against_published(
                scratch, reference, analysis.margin, analysis.confidence, n_test, analysis.min_seeds
            )
        out.append(entry)
    return out
