"""The report's verdicts: tuning gaps per row, claim 1 per budget (one-sided non-inferiority), claim 2 (the
lottery ticket against random init, per lr band), and claim 3 as a 2×2 interaction at matched compute."""

from __future__ import annotations

import math

import numpy as np

from study.final.evaluation import FinalResult

from .claim4 import claim4
from .family import assign_roles
from .settings import Analysis
from .stats import TOLERANCE, Paired, contrast, noninferiority, one_sided, paired, welch

ARM_ORDER = [
    "unpruned", "finetune", "finetune-random", "scratch-e", "scratch-b", "lottery", "uniform", "guided", "transferred"
]  # fmt: skip
# Claim 1 at matched budgets: scratch row and pick, fine-tune pick, and the account the budget is in
MATCHED = {
    "E": (("scratch-e", "best@E"), "best@E", "train FLOPs <= E epochs of the pruned model"),
    "B": (("scratch-b", "best@B"), "best@B", "train FLOPs <= the base's training"),
    "P": (("scratch-b", "best@P"), "best@P", "pipeline FLOPs <= base training + E epochs of the pruned model"),
}
CAPPED = {  # capped mode: fine-tune searched up to E (its pipeline is then within P), scratch up to each budget
    "E": (("scratch-e", "best@E"), "best@E", "each study searched up to E epochs of the pruned model"),
    "B": (("scratch-b", "best@B"), "best@E", "scratch searched up to the base's training FLOPs; fine-tune up to E"),
    "P": (
        ("scratch-b", "best@P"),
        "best@E",
        "pipeline account: scratch up to the base's training + E epochs; fine-tune's pipeline (base + up to E)",
    ),
}
FIXED = {  # fixed-budget mode: each arm's study has its own epochs (E or B); fine-tune has its own
    "E": (("scratch-e", "best"), "best", "each arm at its fixed epochs"),
    "B": (("scratch-b", "best"), "best", "each arm at its fixed epochs"),
}
TUNED_PICK = {
    "finetune": "best@E",
    "finetune-random": "best@E",
    "lottery": "best@E",
    "scratch-e": "best@E",
    "scratch-b": "best@B",
}


def n_test_of(results: list[FinalResult]) -> int | None:
    """The test images each final run was scored on (None when the results do not say)."""
    return max((r.n_test for r in results), default=0) or None


def accs(results: list[FinalResult], arm: str, choice: str) -> list[float]:
    return [r.test_acc for r in sorted(results, key=lambda r: r.seed) if r.arm == arm and r.choice == choice]


def claim1_cells(mode: str, budget: str) -> list[tuple[str, str]]:
    """The (arm, pick) cells claim 1 compares at a budget in a mode; none where the mode does not judge it."""
    table = {"pareto": MATCHED, "capped": CAPPED, "fixed-budget": FIXED}[mode]
    if budget not in table:
        return []
    scratch, ft_pick, _ = table[budget]
    return [scratch, ("finetune", ft_pick)]


def tuned_pick(arm: str, mode: str) -> str:
    """The tuned pick a row's baselines are set against: the best within the row's own budget."""
    return "best" if mode == "fixed-budget" else TUNED_PICK.get(arm, "best")


def has_arm(results: list[FinalResult], arm: str) -> bool:
    """Whether the spec has this arm: any final run of it, whatever its pick."""
    return any(r.arm == arm for r in results)


def shares_base(results: list[FinalResult], a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two cells' runs share a per-seed base (fine-tune picks from one seed's base): every run names
    its base, and seed by seed it is the same one. Such cells are compared paired by seed."""
    ba = {r.seed: r.base_run for r in results if (r.arm, r.choice) == a}
    bb = {r.seed: r.base_run for r in results if (r.arm, r.choice) == b}
    return bool(ba) and all(ba.values()) and ba == bb


def compare(results: list[FinalResult], a: tuple[str, str], b: tuple[str, str], confidence: float) -> dict:
    """a minus b, two-sided: paired by seed when they share a base, else Welch."""
    test = paired if shares_base(results, a, b) else welch
    return test(accs(results, *a), accs(results, *b), confidence, n_test_of(results))


def runs_of(results: list[FinalResult], arm: str, choice: str) -> tuple[str, ...]:
    """The final runs of a cell, by seed: two cells with the same runs are one measurement, not two."""
    return tuple(r.run_id for r in sorted(results, key=lambda r: r.seed) if r.arm == arm and r.choice == choice)


def tuning_gaps(results: list[FinalResult], mode: str, confidence: float = 0.95) -> list[dict]:
    """Per row: its tuned pick minus each of its baselines, with a two-sided Welch CI; a tuned pick that is
    the baseline itself (the same runs) says so instead of testing identical runs."""
    gaps = []
    for arm in sorted({r.arm for r in results if r.arm != "unpruned"}, key=ARM_ORDER.index):
        pick = tuned_pick(arm, mode)
        tuned = accs(results, arm, pick)
        baselines = sorted({r.choice for r in results if r.arm == arm and not r.choice.startswith(("best", "claim2"))})
        for baseline in baselines:
            if not tuned:
                continue
            if runs_of(results, arm, pick) == runs_of(results, arm, baseline):
                note = f"the tuned pick is the {baseline} baseline (the same runs): no test"
                gaps.append({"arm": arm, "tuned": pick, "baseline": baseline, "note": note})
                continue
            test = compare(results, (arm, pick), (arm, baseline), confidence)
            gaps.append({"arm": arm, "tuned": pick, "baseline": baseline, **test})
    return gaps


def _label(entry: dict, analysis: Analysis) -> dict:
    if analysis.post_hoc:
        entry["verdict"] = "post hoc: " + entry["verdict"]
        entry["post_hoc"] = list(analysis.post_hoc)
    return entry


def claim1(results: list[FinalResult], analysis: Analysis, mode: str) -> list[dict]:
    """Tuned scratch against tuned fine-tuning at each matched budget; a missing pick is named, never
    replaced by another."""
    out = []
    table = {"pareto": MATCHED, "capped": CAPPED, "fixed-budget": FIXED}[mode]
    seen: dict[tuple, str] = {}  # (scratch runs, fine-tune runs) -> the budget that carries their test
    primary = analysis.primary.removeprefix("1@") if analysis.primary.startswith("1@") else None
    for budget in sorted(analysis.budgets, key=lambda b: b != primary):  # the primary carries a shared test
        if budget not in table:
            continue
        (arm, pick), ft_pick, _ = table[budget]
        seen.setdefault((runs_of(results, arm, pick), runs_of(results, "finetune", ft_pick)), budget)
    for budget in analysis.budgets:
        if budget not in table:
            continue
        (arm, pick), ft_pick, account = table[budget]
        if not any(r.arm == arm for r in results) or not has_arm(results, "finetune"):
            continue  # an arm the spec does not have (a Section 5 spec may train no fine-tune arm)
        entry = {
            "claim": f"1 at budget {budget}: tuned {arm} ({pick}) is as good as or better than tuned fine-tuning "
            f"({ft_pick})",
            "budget": budget,
            "account": account,
            "comparison": f"{arm}:{pick} - finetune:{ft_pick}",
            "margin": analysis.margin,
        }
        scratch, finetune = accs(results, arm, pick), accs(results, "finetune", ft_pick)
        if not scratch or not finetune:
            gone = [f"{a}:{p}" for a, p, v in ((arm, pick, scratch), ("finetune", ft_pick, finetune)) if not v]
            entry["verdict"] = f"missing: no final runs for {', '.join(gone)} (no trial within that budget)"
        else:
            entry |= noninferiority(
                scratch,
                finetune,
                analysis.margin,
                analysis.confidence,
                n_test_of(results),
                analysis.min_seeds,
                shares_base(results, (arm, pick), ("finetune", ft_pick)),
            )
            runs = (runs_of(results, arm, pick), runs_of(results, "finetune", ft_pick))
            if seen[runs] != budget:  # the same comparison again: one piece of evidence, printed once
                entry["same_as"] = seen[runs]
                entry["verdict"] = f"same runs as budget {seen[runs]}: not a separate test"
        out.append(_label(entry, analysis))
    return out


def claim3(results: list[FinalResult], analysis: Analysis, mode: str) -> dict | None:
    """Recipe (literature/paper baseline vs tuned) × arm (scratch vs fine-tune), cells within budget E:
    (a) the old contradiction reproduces: scratch-literature is worse than fine-tune-paper by more than the
    margin; (b) tuning removes it: tuned scratch is non-inferior to tuned fine-tune; (c) the interaction
    (ST - SL) - (FT - FP) > 0. Supported only when all three hold."""
    ft_pick = tuned_pick("finetune", mode)
    st, sl = accs(results, "scratch-e", tuned_pick("scratch-e", mode)), accs(results, "scratch-e", "literature")
    ft, fp = accs(results, "finetune", ft_pick), accs(results, "finetune", "paper")
    cells = {
        "scratch tuned (ST)": st,
        "scratch literature (SL)": sl,
        "fine-tune tuned (FT)": ft,
        "fine-tune paper (FP)": fp,
    }
    entry = {
        "claim": "3: earlier contradictions came from poorly tuned baselines (recipe × arm interaction, budget E)",
        "cells": {k: {"n": len(v), "mean": float(np.mean(v)) if v else math.nan} for k, v in cells.items()},
        "margin": analysis.margin,
        "test": "Welch t with Satterthwaite df on independent cells (FT and FP, sharing a base per seed, as one "
        "paired difference); one-sided at the spec's confidence",
    }
    if not has_arm(results, "scratch-e") or not has_arm(results, "finetune"):
        return None  # the claim needs both arms; a spec without one does not make it
    if missing := [k for k, v in cells.items() if not v]:
        entry["verdict"] = (
            f"missing: no final runs for {', '.join(missing)} (a tuned pick with no trial within budget E, or a "
            "baseline the spec does not run); add it to the spec"
        )
        return _label(entry, analysis)
    need = max(2, analysis.min_seeds)
    if few := {k: len(v) for k, v in cells.items() if len(v) < need}:
        counts = ", ".join(f"{k} n={n}" for k, n in few.items())
        entry["verdict"] = f"inconclusive (too few seeds: {counts}; the spec asks for {analysis.min_seeds})"
        return _label(entry, analysis)
    if nan := [k for k, v in cells.items() if any(math.isnan(x) for x in v)]:
        entry["verdict"] = f"inconclusive ({', '.join(nan)}: a run without an accuracy (NaN))"
        return _label(entry, analysis)
    c2 = 2 * analysis.confidence - 1  # the two-sided interval whose ends are one-sided bounds at `confidence`
    n_test = n_test_of(results)
    a = welch(sl, fp, c2, n_test)
    a["p_one_sided"] = one_sided(a, -analysis.margin, "below")
    a["holds"] = bool(a["ci_high"] < -analysis.margin - TOLERANCE)
    a["part"] = "(a) the old contradiction reproduces: SL - FP < -margin"
    b = noninferiority(st, ft, analysis.margin, analysis.confidence, n_test, analysis.min_seeds)
    b["holds"] = b["verdict"] == "supported"
    b["part"] = "(b) tuning removes it: ST - FT > -margin"
    ft_fp_paired = shares_base(results, ("finetune", ft_pick), ("finetune", "paper"))
    if ft_fp_paired:  # FT and FP fine-tune one base per seed: their difference is one paired cell
        c = contrast([st, sl, Paired(tuple(ft), tuple(fp))], [1, -1, -1], c2, n_test)
    else:
        c = contrast([st, sl, ft, fp], [1, -1, -1, 1], c2, n_test)
    c["p_one_sided"] = one_sided(c, 0.0, "above")
    c["holds"] = bool(c["ci_low"] > TOLERANCE)
    c["part"] = "(c) the interaction (ST - SL) - (FT - FP) > 0"
    d = noninferiority(ft, fp, analysis.margin, analysis.confidence, n_test, analysis.min_seeds, ft_fp_paired)
    d["holds"] = d["verdict"] == "supported"
    d["part"] = "(d) tuning did not hurt fine-tuning: FT - FP > -margin"
    entry["parts"] = {"a": a, "b": b, "c": c, "d": d}
    entry["verdict"] = claim3_verdict(a, b, c, analysis.margin, d)
    return _label(entry, analysis)


def claim3_verdict(a: dict, b: dict, c: dict, margin: float, d: dict | None = None) -> str:
    """Supported only when (a), (b), (c) and (d) all hold: (c) alone also grows when tuning made fine-tuning
    worse than its own paper recipe, which is no evidence that the old baselines were poorly tuned.
    Contradicted when (a) holds and tuned scratch stays below fine-tune by more than the margin; otherwise
    inconclusive, naming what is not established."""
    parts = [p for p in (a, b, c, d) if p is not None]
    if any(math.isnan(p["ci_low"]) for p in parts):
        return "inconclusive (fewer than 2 seeds in a cell)"
    if all(p["holds"] for p in parts):
        return "supported"
    if a["holds"] and b.get("verdict", "contradicted") == "contradicted" and b["ci_high"] < -margin - TOLERANCE:
        return "contradicted: the contradiction reproduces and tuned scratch stays below fine-tune"
    if a["ci_low"] > -margin + TOLERANCE:
        return (
            "inconclusive (no contradiction to explain: literature-scratch is not worse than fine-tune's paper "
            "recipe by more than the margin)"
        )
    failed = [p["part"] for p in parts if not p["holds"]]
    return "inconclusive; not established: " + "; ".join(failed)


def lr_bands(trials: dict[str, list[tuple[float, float]]], low: float, high: float, n: int = 3) -> list[dict]:
    """Claim 2 on the search trials: the lottery ticket against random init (the scratch study) within each
    of `n` equal log-width lr bands; descriptive (trials are not seeds), Welch on validation accuracy."""
    edges = np.geomspace(low, high, n + 1)
    out = []
    ticket, scratch = trials.get("lottery", []), trials.get("scratch", trials.get("scratch-e", []))
    for i in range(n):
        lo, hi = edges[i], edges[i + 1]
        t, s = ([acc for lr, acc in pts if lo <= lr <= hi] for pts in (ticket, scratch))
        row = {"band": f"lr [{lo:.3g}, {hi:.3g}]", "n_ticket": len(t), "n_scratch": len(s)}
        if t and s:
            row |= welch(t, s) | {"ticket_mean": float(np.mean(t)), "scratch_mean": float(np.mean(s))}
        out.append(row)
    return out


CLAIM2_PICKS = ("claim2@lr", "claim2@lr/10")  # the protocol's fixed recipes, run for both arms


def claim2(results: list[FinalResult], analysis: Analysis, mode: str, bands: list[dict]) -> dict | None:
    """Claim 2 as Liu et al. (after Frankle & Carbin) state it, per learning rate: with the base's large lr the
    winning ticket brings no gain over a random init of the same pruned structure (non-inferiority of random
    init), while at lr/10 it may; the small-lr difference and the interaction are reported beside it. The
    tuned ticket against tuned scratch and the search trials' lr bands are descriptive."""
    if not has_arm(results, "lottery"):
        return None  # the spec has no lottery arm
    hi_r, hi_t = accs(results, "scratch-e", CLAIM2_PICKS[0]), accs(results, "lottery", CLAIM2_PICKS[0])
    lo_r, lo_t = accs(results, "scratch-e", CLAIM2_PICKS[1]), accs(results, "lottery", CLAIM2_PICKS[1])
    entry = {
        "claim": "2: at the base's large lr the winning ticket brings no gain over a random init of the same "
        "pruned structure (budget E)",
        "comparison": "random init - winning ticket, the base recipe at the base's lr",
        "protocol": "final evaluation: the ticket and a random init of the same pruned structure, each at the "
        "base's lr and at lr/10, the base recipe otherwise (E epochs), the spec's final seeds",
        "lr_bands": bands,
    }
    cells = {"random@lr": hi_r, "ticket@lr": hi_t, "random@lr/10": lo_r, "ticket@lr/10": lo_t}
    if gone := [k for k, v in cells.items() if not v]:
        entry["verdict"] = f"missing: no final runs for {', '.join(gone)} (the claim 2 protocol did not run)"
        return _label(entry, analysis)
    n_test, c2 = n_test_of(results), 2 * analysis.confidence - 1
    entry |= noninferiority(hi_r, hi_t, analysis.margin, analysis.confidence, n_test, analysis.min_seeds)
    entry["small_lr"] = welch(lo_r, lo_t, c2, n_test) | {"what": "random init - ticket at lr/10 (two-sided)"}
    entry["interaction"] = contrast([hi_r, hi_t, lo_r, lo_t], [1, -1, -1, 1], c2, n_test) | {
        "what": "(random - ticket) at lr minus (random - ticket) at lr/10: how much the ticket's value depends on lr"
    }
    tuned_r, tuned_t = accs(results, "scratch-e", tuned_pick("scratch-e", mode)), accs(results, "lottery", "best@E")
    if tuned_r and tuned_t:
        entry["tuned"] = welch(tuned_r, tuned_t, c2, n_test) | {"what": "tuned scratch-e - tuned ticket (descriptive)"}
    return _label(entry, analysis)


def random_control(results: list[FinalResult], analysis: Analysis, mode: str) -> dict | None:
    """Does the criterion matter? Tuned fine-tuning from the method's channels minus tuned fine-tuning from
    random channels at the same widths (two-sided Welch; a control, not one of the paper's claims)."""
    pick = tuned_pick("finetune", mode)
    chosen, random = accs(results, "finetune", pick), accs(results, "finetune-random", pick)
    if not chosen or not random:
        return None
    test = compare(results, ("finetune", pick), ("finetune-random", pick), analysis.confidence)
    if test["ci_low"] > 0:
        verdict = "the criterion's channels fine-tune better than random ones"
    elif test["ci_high"] < 0:
        verdict = "random channels fine-tune better than the criterion's"
    else:
        verdict = "no difference established between the criterion's and random channels"
    entry = {
        "claim": f"control: criterion vs random selection at the same widths (finetune {pick})",
        "comparison": f"finetune:{pick} - finetune-random:{pick}",
        **test,
        "verdict": verdict,
    }
    return _label(entry, analysis)


def claims(results: list[FinalResult], analysis: Analysis, mode: str, bands: list[dict] | None = None) -> list[dict]:
    out = claim1(results, analysis, mode)
    if (control := random_control(results, analysis, mode)) is not None:
        out.append(control)
    if (c2 := claim2(results, analysis, mode, bands or [])) is not None:
        out.append(c2)
    if (c3 := claim3(results, analysis, mode)) is not None:
        out.append(c3)
    out += claim4(results, analysis)
    return assign_roles(out, analysis)
