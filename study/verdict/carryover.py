"""From validation to test: per report row, the validation accuracy its pick was chosen on (confirmed mean
± sd over seeds and bases) beside its final test accuracy (mean ± sd over the final seeds), their gap with
its noise, and in words: a gap beyond its noise, a tuned pick that tests below one of its own baselines,
and how each final run's budget was matched to its own seed's pruned model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.final.confirm import Confirmation
from study.final.evaluation import FinalResult
from study.final.picks import Choice

from .stats import binomial_floor
from .tables import markdown

CONFIDENCE = 0.95  # two-sided, for the gap's interval (descriptive: nothing is decided on it)


def _part(values: list[float], n_images: int) -> tuple[float, float, float, float]:
    """(mean, sd, variance of the mean, its df) of one side; the variance floored at the binomial variance
    of one run's accuracy on `n_images` (a single run, or runs that agree, are not certainty)."""
    x = np.asarray([v for v in values if not math.isnan(v)], float)
    if not len(x):
        return math.nan, math.nan, math.nan, math.nan
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    floor = binomial_floor(mean, n_images)
    var = max(sd * sd if len(x) > 1 else 0.0, floor)
    dof = len(x) - 1 if len(x) > 1 and sd * sd > floor else math.inf  # a floored variance is known, not estimated
    return mean, sd, var / len(x), dof


def gap_interval(val: list[float], test: list[float], n_val: int, n_test: int, confidence: float = CONFIDENCE):
    """test mean minus validation mean, with a two-sided Welch-Satterthwaite interval (each side's variance
    floored at its binomial variance)."""
    mv, _, vv, dv = _part(val, n_val)
    mt, _, vt, dt = _part(test, n_test)
    gap = mt - mv
    se = math.sqrt(vv + vt)
    if math.isnan(se) or se == 0:
        return gap, gap, gap
    parts = sum(v * v / d for v, d in ((vv, dv), (vt, dt)) if math.isfinite(d))
    dof = (vv + vt) ** 2 / parts if parts else math.inf
    q = stats.t.ppf(0.5 + confidence / 2, dof) if math.isfinite(dof) else stats.norm.ppf(0.5 + confidence / 2)
    return gap, gap - q * se, gap + q * se


def validation_of(choice: Choice, confirmations: list[Confirmation]) -> tuple[list[float], int]:
    """The validation accuracies a pick was chosen on (its confirmed candidate's runs, else its one search
    run) and the number of bases they came from."""
    for conf in confirmations:
        if (conf.arm, conf.name) == (choice.arm, choice.name):
            cand = next(c for c in conf.candidates if c.trial == conf.chosen)
            return list(cand.val_accs), len(set(cand.bases)) if cand.bases else 1
    return ([] if choice.val_acc is None else [choice.val_acc]), 1


def carryover_table(
    choices: list[Choice],
    confirmations: list[Confirmation],
    results: list[FinalResult],
    n_val: int,
    n_test: int,
) -> pd.DataFrame:
    """One row per (arm, pick) of the final evaluation: validation (search split) against test."""
    rows = []
    for c in choices:
        test = [r.test_acc for r in results if (r.arm, r.choice) == (c.arm, c.name)]
        val, bases = validation_of(c, confirmations)
        if not test or not val:
            continue
        mv, sv, _, _ = _part(val, n_val)
        mt, st, _, _ = _part(test, n_test)
        gap, low, high = gap_interval(val, test, n_val, n_test)
        rows.append(
            {
                "arm": c.arm,
                "pick": c.name,
                "is": c.kind,
                "val mean": mv,
                "val sd": sv,
                "val runs": len(val),
                "val bases": bases,
                "test mean": mt,
                "test sd": st,
                "test seeds": len(test),
                "gap": gap,
                "gap low": low,
                "gap high": high,
                "beyond noise": bool(low > 0 or high < 0),
            }
        )
    return pd.DataFrame(rows).drop_duplicates(["arm", "pick"]) if rows else pd.DataFrame()


def _pp(x: float) -> str:
    return f"{100 * x:+.2f} pp"


def gap_notes(table: pd.DataFrame) -> list[str]:
    """A sentence for each gap beyond its noise, set against the median gap of every row (the shift that
    more training data and another image set give every arm alike)."""
    if table.empty:
        return []
    median = float(table["gap"].median())
    out = []
    for r in table.to_dict(orient="records"):
        if not r["beyond noise"]:
            continue
        side = "below" if r["gap"] < median else "above"
        out.append(
            f"{r['arm']} {r['pick']}: test {100 * r['test mean']:.2f} against validation {100 * r['val mean']:.2f} "
            f"({r['val runs']} run{'s' if r['val runs'] > 1 else ''}, {r['val bases']} base"
            f"{'s' if r['val bases'] > 1 else ''}), a gap of "
            f"{_pp(r['gap'])} beyond its noise (95% interval [{_pp(r['gap low'])}, {_pp(r['gap high'])}]); "
            f"{abs(100 * (r['gap'] - median)):.2f} pp {side} the median gap of all rows ({_pp(median)}), which "
            f"the final runs' larger training set and the test images give every row alike"
            + (": its validation score overstated it" if r["gap"] < median and r["is"] != "baseline" else "")
        )
    return out


def below_baseline_notes(gaps: list[dict], results: list[FinalResult]) -> list[str]:
    """A sentence for each tuned pick that tests below one of its own study's baselines. The pick stands:
    picks are made on validation, never again on test."""
    out = []
    for g in gaps:
        diff = g.get("diff")
        if diff is None or math.isnan(diff) or diff >= 0:
            continue
        n = g.get("n_a", 0)
        noise = not (g.get("ci_high", math.nan) < 0)
        how = "paired by seed (shared bases)" if g.get("paired") else "Welch"
        within = (
            f"within the noise of {n} final seeds ({how} 95% CI [{_pp(g['ci_low'])}, {_pp(g['ci_high'])}])"
            if noise
            else f"beyond the noise of {n} final seeds ({how} 95% CI [{_pp(g['ci_low'])}, {_pp(g['ci_high'])}])"
        )
        meaning = (
            "so the difference may be seed luck; the pick stands, as picks are never re-made on test"
            if noise
            else "so the pick's lead on validation did not carry over to test; the pick stands (no re-selection "
            "on test), and a verdict that compares with this row is judged with it: a reader may set this "
            f"row's {g['baseline']} baseline beside it in the table"
        )
        out.append(
            f"{g['arm']} {g['tuned']} tests {_pp(-diff).lstrip('+')} below its own {g['baseline']} baseline, "
            f"{within}, {meaning}."
        )
    return out


def seed_budget_table(results: list[FinalResult]) -> pd.DataFrame:
    """Per final run group (arm, pick): its budget, the search's epochs, each seed's epochs, and whether every
    run is within its own seed's budget."""
    rows = []
    for (arm, pick), runs in _groups(results).items():
        if not runs[0].budget:
            continue
        rows.append(
            {
                "arm": arm,
                "pick": pick,
                "budget": runs[0].budget,
                "search epochs": runs[0].params.get("epochs"),
                "final epochs per seed": ", ".join(str(r.epochs) for r in runs),
                "within its seed's budget": "yes" if all(r.within for r in runs) else "NO",
            }
        )
    return pd.DataFrame(rows)


def _groups(results: list[FinalResult]) -> dict[tuple[str, str], list[FinalResult]]:
    out: dict[tuple[str, str], list[FinalResult]] = {}
    for r in sorted(results, key=lambda r: r.seed):
        out.setdefault((r.arm, r.choice), []).append(r)
    return out


BUDGET_NOTE = (
    "budgets per final seed: each final seed prunes its own base, so where the method's widths depend on the "
    "trained weights (a global threshold) its pruned model has FLOPs of its own, and so its own B and P in "
    "epochs. A Scratch-B/P run takes that seed's budget: a tuned pick keeps its fraction of the search's "
    "budget, a run of the whole budget (the paper's Scratch-B) takes the seed's whole budget, a fixed-epoch "
    "baseline keeps its epochs, and none exceeds the seed's cap; every final run is checked against its own "
    "seed's budget (E, B or P as that seed's pruned model counts it)"
)


def carryover_section(
    choices: list[Choice],
    confirmations: list[Confirmation],
    results: list[FinalResult],
    gaps: list[dict],
    n_val: int,
    n_test: int,
) -> tuple[list[str], dict]:
    """The report's section (markdown lines) and the same as data for verdict.json."""
    table = carryover_table(choices, confirmations, results, n_val, n_test)
    budgets = seed_budget_table(results)
    lines = []
    if not table.empty:
        shown = table.copy()
        shown["validation (search split)"] = [
            f"{100 * m:.2f} ± {100 * (0 if math.isnan(s) else s):.2f} ({n} run{'s' if n > 1 else ''}, {b} base"
            + ("s)" if b > 1 else ")")
            for m, s, n, b in zip(
                shown["val mean"], shown["val sd"], shown["val runs"], shown["val bases"], strict=True
            )
        ]
        shown["test (final seeds)"] = [
            f"{100 * m:.2f} ± {100 * (0 if math.isnan(s) else s):.2f} ({n} seeds)"
            for m, s, n in zip(shown["test mean"], shown["test sd"], shown["test seeds"], strict=True)
        ]
        shown["gap (test − val)"] = [
            f"{_pp(g)} [{_pp(lo)}, {_pp(hi)}]{' *' if b else ''}"
            for g, lo, hi, b in zip(
                shown["gap"], shown["gap low"], shown["gap high"], shown["beyond noise"], strict=True
            )
        ]
        cols = ["arm", "pick", "is", "validation (search split)", "test (final seeds)", "gap (test − val)"]
        lines += [
            "## From validation to test: what each pick was chosen on, and what it tested",
            "",
            "Validation: the accuracies a pick was chosen on (a tuned pick: its confirmed candidate's search and "
            "confirmation runs, mean over bases for arms that inherit one; a baseline: its one search run). "
            "Test: the final seeds. Gap: test − validation with a two-sided 95% Welch interval, each side's "
            "variance floored at its binomial variance; * marks a gap whose interval excludes 0. Descriptive: "
            "no pick is re-made on test.",
            "",
            markdown(shown[cols]),
            "",
        ]
        lines += [f"- {n}" for n in gap_notes(table)]
    below = below_baseline_notes(gaps, results)
    lines += [f"- {n}" for n in below]
    if not budgets.empty:
        lines += ["", "Budgets in the final evaluation, seed by seed:", "", markdown(budgets), ""]
        lines += [f"- {BUDGET_NOTE}", ""]
    data = {
        "validation_to_test": table.to_dict(orient="records"),
        "picks_below_baselines": below,
        "final_budgets": budgets.to_dict(orient="records"),
    }
    return lines, data
