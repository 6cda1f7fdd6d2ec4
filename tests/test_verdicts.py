"""Verdicts (issue 12) checked against direct scipy/numpy computations on fixed numbers: one-sided
non-inferiority at the boundaries, each claim-3 part, and post-hoc labelling."""

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from scipy import stats

from study.final.evaluation import FinalResult
from study.verdict.claims import Analysis, claim3, claim3_verdict, claims, tuning_gaps
from study.verdict.stats import contrast, noninferiority

MARGIN = 0.005
PRE = Analysis(MARGIN, 0.95, ("E", "B", "P"))


def _welch_reference(a, b, level):
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    d = a.mean() - b.mean()
    t = stats.t.ppf(level, df)  # one-sided bound at `level`
    return d, se, df, d - t * se, d + t * se


@pytest.mark.parametrize(
    "shift, expect",
    [
        (+0.004, "supported"),  # the whole interval above -margin
        (-0.004, "inconclusive"),  # straddles -margin
        (-0.030, "contradicted"),  # the whole interval below -margin
    ],
)
def test_noninferiority_matches_scipy_at_the_boundaries(shift, expect):
    b = [0.900, 0.902, 0.898, 0.901]
    a = [x + shift + e for x, e in zip(b, (0.0005, -0.0004, 0.0003, -0.0002), strict=True)]
    test = noninferiority(a, b, MARGIN, 0.95)
    d, se, df, low, high = _welch_reference(a, b, 0.95)
    assert test["diff"] == pytest.approx(d) and test["dof"] == pytest.approx(df)
    assert (test["ci_low"], test["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # one-sided p of H0: diff <= -margin, from scipy's own one-sided Welch test on a shifted sample
    ref = stats.ttest_ind(np.asarray(a) + MARGIN, b, equal_var=False, alternative="greater")
    assert test["p_noninferiority"] == pytest.approx(ref.pvalue)
    assert test["verdict"].startswith(expect)
    assert (test["p_noninferiority"] < 0.05) == (expect == "supported")
    if expect == "inconclusive":
        assert "seeds per arm" in test["verdict"] and test["needed_n"] > len(a)


def test_a_ci_below_zero_but_above_minus_margin_is_not_contradicted():
    """Before issue 12, an interval like [-0.6, -0.1] pp with a 0.5 pp margin was called contradicted."""
    test = noninferiority([0.896, 0.897, 0.895], [0.9, 0.9005, 0.8995], MARGIN)
    assert test["ci_high"] < 0 and test["ci_low"] < -MARGIN < test["ci_high"]
    assert test["verdict"].startswith("inconclusive")


def test_interaction_contrast_matches_a_direct_welch_satterthwaite_computation():
    cells = [[0.95, 0.96, 0.94], [0.90, 0.91, 0.89, 0.92], [0.955, 0.95, 0.96], [0.94, 0.93, 0.95]]
    w = [1, -1, -1, 1]
    test = contrast(cells, w, 0.90)
    v = [wi**2 * np.var(c, ddof=1) / len(c) for wi, c in zip(w, cells, strict=True)]
    df = sum(v) ** 2 / sum(vi**2 / (len(c) - 1) for vi, c in zip(v, cells, strict=True))
    est = sum(wi * np.mean(c) for wi, c in zip(w, cells, strict=True))
    half = stats.t.ppf(0.95, df) * math.sqrt(sum(v))
    assert test["diff"] == pytest.approx(est) and test["dof"] == pytest.approx(df)
    assert (test["ci_low"], test["ci_high"]) == (pytest.approx(est - half), pytest.approx(est + half))


def _results(cells: dict[tuple[str, str], list[float]]) -> list[FinalResult]:
    return [
        FinalResult(arm, choice, seed, acc, 1.0, 1.0, 1, {}, f"{arm}-{choice}-{seed}")
        for (arm, choice), accs in cells.items()
        for seed, acc in enumerate(accs)
    ]


def _cells(st, sl, ft, fp):
    return {
        ("scratch-e", "best@E"): st,
        ("scratch-e", "literature"): sl,
        ("finetune", "best@E"): ft,
        ("finetune", "paper"): fp,
    }


def test_claim3_supported_only_when_all_three_parts_hold():
    c = claim3(
        _results(_cells([0.950, 0.951, 0.949], [0.900, 0.902, 0.898], [0.949, 0.950, 0.948], [0.930, 0.931, 0.929])),
        PRE,
        mode="pareto",
    )
    a, b, i = (c["parts"][k] for k in "abc")
    assert a["holds"] and b["holds"] and i["holds"]
    assert a["diff"] == pytest.approx(0.900 - 0.930) and i["diff"] == pytest.approx((0.95 - 0.90) - (0.949 - 0.93))
    assert c["verdict"] == "supported"


def test_claim3_is_never_supported_when_literature_scratch_already_beats_finetune():
    """The synthetic case of issue 12: no old contradiction exists, so there is nothing to explain."""
    c = claim3(
        _results(_cells([0.960, 0.961, 0.959], [0.955, 0.956, 0.954], [0.930, 0.931, 0.929], [0.900, 0.901, 0.899])),
        PRE,
        mode="pareto",
    )
    assert not c["parts"]["a"]["holds"]
    assert c["verdict"].startswith("inconclusive (no contradiction to explain")


def test_claim3_contradicted_when_tuning_leaves_scratch_below_finetune():
    c = claim3(
        _results(_cells([0.900, 0.901, 0.899], [0.880, 0.881, 0.879], [0.950, 0.951, 0.949], [0.930, 0.931, 0.929])),
        PRE,
        mode="pareto",
    )
    assert c["parts"]["a"]["holds"] and not c["parts"]["b"]["holds"]
    assert c["verdict"].startswith("contradicted")


def test_claim3_names_a_missing_cell():
    cells = _cells([0.95, 0.96], [], [0.95, 0.94], [0.93, 0.92])
    del cells[("scratch-e", "literature")]
    assert claim3(_results(cells), PRE, mode="pareto")["verdict"].startswith("missing: no final runs for scratch lit")


def test_a_report_time_margin_is_labelled_post_hoc():
    results = _results(_cells([0.95, 0.951, 0.949], [0.90, 0.91, 0.92], [0.95, 0.951, 0.949], [0.93, 0.94, 0.92]))
    pre = claims(results, PRE, mode="pareto")
    post = claims(results, Analysis(0.02, 0.95, ("E",), ("--margin 2.0 pp chosen at report time",)), mode="pareto")
    assert not any(v["verdict"].startswith("post hoc") for v in pre)
    assert post and all(v["verdict"].startswith("post hoc: ") and v["post_hoc"] for v in post)
    assert "POST HOC" in Analysis(0.02, 0.95, ("E",), ("x",)).describe()


def test_claim1_reports_a_missing_budget_pick_instead_of_falling_back():
    results = _results({("finetune", "best@E"): [0.9, 0.91], ("scratch-e", "best"): [0.92, 0.93]})
    entry, three = claims(results, Analysis(MARGIN, 0.95, ("E",)), mode="pareto")
    assert entry["verdict"].startswith("missing: no final runs for scratch-e:best@E")
    assert three["verdict"].startswith("missing: no final runs for scratch tuned (ST)")  # named, not dropped


def test_lr_bands_compare_ticket_and_random_init_within_equal_log_bands():
    from study.verdict.claims import lr_bands

    trials = {
        "lottery": [(0.001, 0.95), (0.002, 0.97), (0.02, 0.80), (0.2, 0.60)],
        "scratch": [(0.0015, 0.90), (0.003, 0.92), (0.04, 0.81), (0.25, 0.62), (0.3, 0.64)],
    }
    bands = lr_bands(trials, 0.001, 0.3, n=3)
    edges = np.geomspace(0.001, 0.3, 4)
    assert [b["band"] for b in bands] == [f"lr [{lo:.3g}, {hi:.3g}]" for lo, hi in zip(edges, edges[1:], strict=False)]
    low, mid, high = bands
    assert (low["n_ticket"], low["n_scratch"]) == (2, 2) and low["diff"] == pytest.approx(0.96 - 0.91)
    assert (mid["n_ticket"], mid["n_scratch"]) == (1, 1) and mid["diff"] == pytest.approx(0.80 - 0.81)
    assert (high["n_ticket"], high["n_scratch"]) == (1, 2) and high["diff"] == pytest.approx(0.60 - 0.63)


def _floored(values, n_test):
    p = (np.mean(values) * n_test + 0.5) / (n_test + 1)
    return max(np.var(values, ddof=1), p * (1 - p) / n_test)


# ---- issue 25: no certainty from zero spread, seeds needed from t quantiles, claim 3 needs FT >= FP ----

N_DIGITS_TEST = 360  # digits' test set: accuracies move in steps of 1/360


def _floored(values, n_test):
    p = (np.mean(values) * n_test + 0.5) / (n_test + 1)
    return max(np.var(values, ddof=1), p * (1 - p) / n_test)


def test_equal_accuracies_are_not_certainty_the_binomial_floor_against_scipy():
    """Two seeds per arm with equal accuracies: the old rule read the zero spread as certainty ("supported",
    p = 0); floored at one run's binomial variance p(1 - p)/N_test it is a coarse measurement."""
    a, b = [0.95, 0.95], [0.94, 0.94]
    assert noninferiority(a, b, MARGIN, 0.95)["verdict"] == "supported"  # without N_test: the loophole
    test = noninferiority(a, b, MARGIN, 0.95, N_DIGITS_TEST)
    assert test["verdict"].startswith("inconclusive")
    va, vb = _floored(a, N_DIGITS_TEST), _floored(b, N_DIGITS_TEST)
    ref = stats.ttest_ind_from_stats(0.95, math.sqrt(va), 2, 0.94, math.sqrt(vb), 2, equal_var=False)
    assert test["p_value"] == pytest.approx(ref.pvalue)
    assert test["se"] == pytest.approx(math.sqrt(va / 2 + vb / 2))


def test_four_equal_constant_cells_never_support_claim_1_or_3():
    cells = {
        ("scratch-e", "best@E"): [0.9, 0.9],
        ("scratch-e", "literature"): [0.9, 0.9],
        ("finetune", "best@E"): [0.9, 0.9],
        ("finetune", "paper"): [0.9, 0.9],
        ("scratch-b", "best@B"): [0.9, 0.9],
        ("finetune", "best@B"): [0.9, 0.9],
    }
    results = [replace(r, n_test=N_DIGITS_TEST) for r in _results(cells)]
    verdicts = claims(results, PRE, "pareto")
    assert verdicts and not [v for v in verdicts if v["verdict"] == "supported"], verdicts


def _power_holds(va: float, vb: float, room: float, k: int) -> bool:
    """(t_0.95 + t_0.8) · se(k) <= diff + margin, t at the Satterthwaite df of k seeds per arm."""
    df = (va + vb) ** 2 / ((va**2 + vb**2) / (k - 1))
    return (stats.t.ppf(0.95, df) + stats.t.ppf(0.8, df)) * math.sqrt((va + vb) / k) <= room


def test_seeds_needed_come_from_t_quantiles_and_exceed_the_seeds_run():
    """With n = 3 (and n = 2) inconclusive, the old normal-quantile answer could ask for the seeds already run.
    Checked by hand: at the answer n the power condition (t_c + t_power) · se(n) <= diff + margin holds at the
    Satterthwaite df of n seeds per arm, and at n - 1 it does not (unless n - 1 is the seeds run)."""
    for a, b in (([0.901, 0.897, 0.903], [0.900, 0.899, 0.904]), ([0.901, 0.896], [0.900, 0.903])):
        test = noninferiority(a, b, MARGIN, 0.95)
        assert test["verdict"].startswith("inconclusive at this sample size")
        n = test["needed_n"]
        assert n > len(a)
        va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
        holds = partial(_power_holds, va, vb, test["diff"] + MARGIN)
        assert holds(n) and (n - 1 == len(a) or not holds(n - 1))
        assert f"about {n} seeds per arm" in test["verdict"]


def test_fewer_than_the_specs_minimum_seeds_is_too_few():
    strict = Analysis(MARGIN, 0.95, ("E",), min_seeds=3)
    cells = {("scratch-e", "best@E"): [0.95, 0.96], ("finetune", "best@E"): [0.90, 0.91]}
    (v,) = [v for v in claims(_results(cells), strict, "pareto") if v["claim"].startswith("1 at budget E")]
    assert v["verdict"].startswith("inconclusive (too few seeds")


def test_claim_3_is_never_supported_when_tuning_made_fine_tuning_worse_than_its_paper_baseline():
    """The review's case: (a) the old contradiction reproduces, (b) tuned scratch matches tuned fine-tuning,
    and (c) the interaction is large only because tuned fine-tuning fell below its own paper recipe."""
    st, sl = [0.900, 0.901, 0.899, 0.900], [0.850, 0.852, 0.848, 0.851]
    ft, fp = [0.901, 0.900, 0.902, 0.899], [0.930, 0.931, 0.929, 0.930]  # FT far below FP
    entry = claim3(_results(_cells(st, sl, ft, fp)), PRE, "pareto")
    a, b, c, d = (entry["parts"][k] for k in "abcd")
    assert a["holds"] and b["holds"] and c["holds"] and not d["holds"]
    assert claim3_verdict(a, b, c, MARGIN) == "supported"  # the old rule, without (d): the loophole
    assert entry["verdict"] != "supported" and "(d) tuning did not hurt fine-tuning" in entry["verdict"]
    ref = stats.ttest_ind(np.asarray(ft) + MARGIN, fp, equal_var=False, alternative="greater")
    assert d["p_noninferiority"] == pytest.approx(ref.pvalue)


def _shared(cells: dict[tuple[str, str], tuple[str, list[float]]]) -> list[FinalResult]:
    """Results whose cells name their runs: cells given the same key share their final runs."""
    return [
        FinalResult(arm, choice, seed, acc, 1.0, 1.0, 1, {}, f"{key}-{seed}", n_test=N_DIGITS_TEST)
        for (arm, choice), (key, accs_) in cells.items()
        for seed, acc in enumerate(accs_)
    ]


def test_one_comparison_is_printed_once_and_a_pick_that_is_its_baseline_is_not_tested():
    """As in a quick run where the scratch picks coincide: claim 1 at B and P compare the very runs budget E
    compared, so they say so instead of counting as more evidence; a tuned pick that is the paper baseline
    gets no Welch test of identical runs."""
    s, f = [0.95, 0.96, 0.955], [0.94, 0.945, 0.95]
    results = _shared(
        {
            ("scratch-e", "best@E"): ("scratch-t3", s),
            ("scratch-b", "best@B"): ("scratch-t3", s),
            ("scratch-b", "best@P"): ("scratch-t3", s),
            ("scratch-e", "paper"): ("scratch-t0", s),  # the tuned pick is this baseline
            ("finetune", "best@E"): ("finetune-t1", f),
            ("finetune", "best@B"): ("finetune-t1", f),
            ("finetune", "best@P"): ("finetune-t1", f),
        }
    )
    # the primary comparison (1@B by default) carries the one test of runs that budgets share
    claim1 = [v for v in claims(results, PRE, "pareto") if v["claim"].startswith("1 ")]
    assert [v.get("same_as") for v in claim1] == ["B", None, "B"]
    assert [v["verdict"] for v in (claim1[0], claim1[2])] == ["same runs as budget B: not a separate test"] * 2
    assert claim1[1]["role"] == "primary" and "p_holm" not in claim1[1]
    assert not claim1[1]["verdict"].startswith("same runs")
    at_e = replace(PRE, primary="1@E")
    claim1 = [v for v in claims(results, at_e, "pareto") if v["claim"].startswith("1 ")]
    assert [v.get("same_as") for v in claim1] == [None, "E", "E"]
    assert [v["verdict"] for v in claim1[1:]] == ["same runs as budget E: not a separate test"] * 2
    gaps = {
        g["baseline"]: g
        for g in tuning_gaps(
            _shared(
                {
                    ("scratch-e", "best@E"): ("t0", s),
                    ("scratch-e", "paper"): ("t0", s),
                    ("scratch-e", "literature"): ("t5", f),
                }
            ),
            True,
        )
    }
    assert "same runs" in gaps["paper"]["note"] and "p_value" not in gaps["paper"]
    assert gaps["literature"]["p_value"] == pytest.approx(
        stats.ttest_ind_from_stats(
            np.mean(s),
            math.sqrt(_floored(s, N_DIGITS_TEST)),
            3,
            np.mean(f),
            math.sqrt(_floored(f, N_DIGITS_TEST)),
            3,
            equal_var=False,
        ).pvalue
    )


def test_holm_against_a_hand_computation():
    from study.verdict.family import holm

    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, kept monotone at 0.06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})  # capped at 1
    assert holm({}) == {}


def test_one_primary_comparison_the_rest_secondary_and_holm_adjusted():
    """Claim 1 at B is the default primary, tested alone; E and P are secondary: a 'supported' whose Holm-
    adjusted one-sided p does not clear 1 - confidence becomes inconclusive after the adjustment."""
    from study.verdict.family import primary_sentence

    base = [0.900, 0.902, 0.898, 0.901, 0.899]
    noise = (0.0004, -0.0003, 0.0002, -0.0004, 0.0001)
    cells = {
        ("scratch-b", "best@B"): [x + 0.006 + e for x, e in zip(base, noise, strict=True)],  # clearly supported
        ("finetune", "best@B"): base,
        ("scratch-e", "best@E"): [x - 0.003 + e for x, e in zip(base, noise[::-1], strict=True)],  # barely
        ("finetune", "best@E"): base,
        ("scratch-b", "best@P"): [x - 0.003 + e for x, e in zip(base, noise, strict=True)],  # barely
        ("finetune", "best@P"): [x + 0.0001 for x in base],
    }
    verdicts = {v["comparison_id"]: v for v in claims(_results(cells), PRE, "pareto")}
    assert verdicts["1@B"]["role"] == "primary" and verdicts["1@B"]["verdict"] == "supported"
    assert "p_holm" not in verdicts["1@B"]
    e, p = verdicts["1@E"], verdicts["1@P"]
    assert e["role"] == p["role"] == "secondary" and e["holm_family"] == 2
    raw = sorted([e["p_noninferiority"], p["p_noninferiority"]])
    assert 0.025 < raw[0] <= raw[1] < 0.05  # each alone would be supported at one-sided 0.05
    assert sorted([e["p_holm"], p["p_holm"]]) == pytest.approx([2 * raw[0], max(2 * raw[0], raw[1])])
    for v in (e, p):  # adjusted over the family of two, neither clears 0.05
        assert v["p_holm"] >= 0.05 and v["verdict"].startswith("inconclusive after the Holm adjustment")
    sentence = primary_sentence(list(verdicts.values()), PRE)
    assert sentence.startswith("Primary comparison (1@B): scratch-b:best@B - finetune:best@B differs by +0.60 pp")
    assert "supported; the claim holds at this margin" in sentence


def test_a_primary_the_verdicts_do_not_judge_is_refused_on_load():
    from study.plan.load import load_spec
    from study.plan.spec import SpecError

    with pytest.raises(SpecError, match=r"verdict: primary '1@P' is a budget the verdicts do not judge"):
        load_spec("quick", ["verdict.budgets=['E', 'B']", "verdict.primary='1@P'"])
    assert load_spec("quick").verdict.primary == "1@B"


def test_missing_picks_of_claims_2_and_3_are_reported_as_missing_with_why():
    """Issue 25 point 6: a claim whose arms the spec has but whose pick has no final runs says so."""
    cells = {
        ("finetune", "best@E"): [0.90, 0.91, 0.92],
        ("finetune", "paper"): [0.88, 0.89, 0.90],
        ("scratch-e", "literature"): [0.85, 0.86, 0.87],  # scratch-e's tuned pick is missing
        ("lottery", "best@E"): [0.90, 0.90, 0.91],
    }
    verdicts = {v["claim"].split(":")[0]: v for v in claims(_results(cells), PRE, "capped")}
    assert verdicts["2"]["verdict"] == (
        "missing: no final runs for random@lr, ticket@lr, random@lr/10, ticket@lr/10 (the claim 2 protocol did not run)"
    )
    assert verdicts["3"]["verdict"].startswith("missing: no final runs for scratch tuned (ST)")
    # without a lottery arm, claim 2 is not made at all; without scratch-e, neither is claim 3
    no_lottery = {k: v for k, v in cells.items() if k[0] != "lottery"}
    assert "2" not in {v["claim"].split(":")[0] for v in claims(_results(no_lottery), PRE, "capped")}
    no_scratch = {k: v for k, v in cells.items() if k[0] != "scratch-e"}
    assert not [v for v in claims(_results(no_scratch), PRE, "capped") if v["claim"].startswith("3")]


def test_cells_sharing_a_base_are_compared_paired_by_seed_as_scipy_ttest_rel():
    """Issue 25 point 4: fine-tune picks of one seed start from that seed's base, so FT and FP are paired."""
    base = [0.90, 0.93, 0.88, 0.95]  # the bases differ a lot from seed to seed
    ft = [b + 0.010 + e for b, e in zip(base, [0.001, -0.001, 0.0005, -0.0005], strict=True)]
    cells = {("finetune", "best@E"): ft, ("finetune", "paper"): base}
    shared = [replace(r, base_run=f"base{r.seed}") for r in _results(cells)]
    (gap,) = tuning_gaps(shared, "capped")
    ref = stats.ttest_rel(ft, base)
    ci = ref.confidence_interval(0.95)
    assert gap["paired"] and gap["dof"] == 3
    assert gap["diff"] == pytest.approx(np.mean(ft) - np.mean(base))
    assert (gap["ci_low"], gap["ci_high"], gap["p_value"]) == pytest.approx((ci.low, ci.high, ref.pvalue))
    (independent,) = tuning_gaps(_results(cells), "capped")  # no shared base: Welch, blind to the pairing
    assert not independent["paired"] and independent["ci_low"] < 0 < gap["ci_low"]


def test_pooling_over_levels_averages_each_seed_before_the_test():
    from study.verdict.runs_table import pooled_by_seed

    lv = {
        "0.3": _results({("finetune", "best@E"): [0.90, 0.92], ("scratch-b", "best@B"): [0.91, 0.93]}),
        "0.5": _results({("finetune", "best@E"): [0.86, 0.90], ("scratch-b", "best@B"): [0.88, 0.90]}),
    }
    pooled = {(r.arm, r.choice, r.seed): r.test_acc for r in pooled_by_seed(lv)}
    assert pooled == pytest.approx(
        {
            ("finetune", "best@E", 0): 0.88,
            ("finetune", "best@E", 1): 0.91,
            ("scratch-b", "best@B", 0): 0.895,
            ("scratch-b", "best@B", 1): 0.915,
        }
    )


def test_claim2_is_tested_per_learning_rate_as_stated_against_scipy():
    """Issue 25 point 7: random init vs the winning ticket at the base's lr (non-inferiority) with the lr/10
    difference and the interaction beside it."""
    cells = {
        ("scratch-e", "claim2@lr"): [0.931, 0.934, 0.929],
        ("lottery", "claim2@lr"): [0.930, 0.932, 0.931],
        ("scratch-e", "claim2@lr/10"): [0.900, 0.903, 0.899],
        ("lottery", "claim2@lr/10"): [0.915, 0.918, 0.916],
    }
    (c2,) = [v for v in claims(_results(cells), PRE, "capped") if v["claim"].startswith("2")]
    hi_r, hi_t = cells[("scratch-e", "claim2@lr")], cells[("lottery", "claim2@lr")]
    lo_r, lo_t = cells[("scratch-e", "claim2@lr/10")], cells[("lottery", "claim2@lr/10")]
    ref = stats.ttest_ind(hi_r, hi_t, equal_var=False)
    assert c2["diff"] == pytest.approx(np.mean(hi_r) - np.mean(hi_t))
    assert c2["ci_low"] == pytest.approx(ref.confidence_interval(2 * PRE.confidence - 1).low)
    assert c2["verdict"] == "supported"  # no gain from the ticket at the large lr (margin 0.5 pp)
    small = stats.ttest_ind(lo_r, lo_t, equal_var=False)
    assert c2["small_lr"]["diff"] == pytest.approx(np.mean(lo_r) - np.mean(lo_t)) and c2["small_lr"]["ci_high"] < 0
    assert c2["small_lr"]["p_value"] == pytest.approx(small.pvalue)
    inter = (np.mean(hi_r) - np.mean(hi_t)) - (np.mean(lo_r) - np.mean(lo_t))
    assert c2["interaction"]["diff"] == pytest.approx(inter) and c2["interaction"]["ci_low"] > 0
    tuned_only = {("scratch-e", "best@E"): hi_r, ("lottery", "best@E"): hi_t}
    (old,) = [v for v in claims(_results(tuned_only), PRE, "capped") if v["claim"].startswith("2")]
    assert old["verdict"].startswith(
        "missing: no final runs for random@lr, ticket@lr"
    )  # tuned picks alone: not claim 2


def _table(cells: dict[tuple[str, str], list[float]], n_test: int = N_DIGITS_TEST) -> list[FinalResult]:
    """A per-seed table, each cell its own runs (no shared bases)."""
    return [
        FinalResult(arm, choice, seed, acc, 1.0, 1.0, 1, {}, f"{arm}-{choice}-{seed}", n_test=n_test)
        for (arm, choice), accs_ in cells.items()
        for seed, acc in enumerate(accs_)
    ]


def _claim3_cells(literature: list[float], tuned_scratch: list[float]) -> list[FinalResult]:
    return _table(
        {
            ("scratch-e", "best@E"): tuned_scratch,
            ("scratch-e", "literature"): literature,
            ("finetune", "best@E"): [0.950, 0.952, 0.951],
            ("finetune", "paper"): [0.900, 0.905, 0.902],
        }
    )


def test_claim3_with_a_cell_below_min_seeds_is_inconclusive_whatever_its_parts_say():
    """A 2-seed literature cell under min_seeds 3: parts (a) and (c) use it, so claim 3 is not settled."""
    strict = replace(PRE, min_seeds=3)
    results = _claim3_cells([0.80, 0.81], [0.990, 0.991, 0.992])  # would read 'supported' with 2 seeds allowed
    assert claim3(results, PRE, "capped")["verdict"] == "supported"
    verdict = claim3(results, strict, "capped")["verdict"]
    assert verdict.startswith("inconclusive (too few seeds") and "scratch literature (SL) n=2" in verdict


def test_claim3_is_never_contradicted_by_a_part_that_has_too_few_seeds():
    """Tuned scratch with 2 seeds far below fine-tune under min_seeds 3: (b) says 'too few seeds', so claim
    3 cannot read 'contradicted' from it."""
    strict = replace(PRE, min_seeds=3)
    results = _claim3_cells([0.80, 0.81, 0.805], [0.50, 0.501])
    assert claim3(results, replace(PRE, min_seeds=2), "capped")["verdict"].startswith("contradicted")
    assert claim3(results, strict, "capped")["verdict"].startswith("inconclusive (too few seeds")
    b = {
        "ci_low": -0.06,
        "ci_high": -0.04,
        "holds": False,
        "verdict": "inconclusive (too few seeds: n=2, 3)",
        "part": "(b)",
    }
    a = {"ci_low": -0.2, "ci_high": -0.1, "holds": True, "part": "(a)"}
    c = {"ci_low": 0.01, "ci_high": 0.2, "holds": True, "part": "(c)"}
    assert not claim3_verdict(a, b, c, MARGIN).startswith("contradicted")


def test_the_random_control_stays_outside_the_holm_family():
    """Its two-sided p would raise every one-sided secondary's adjusted p; it is a control, unadjusted."""
    ft = [0.950, 0.952, 0.951]
    results = _table(
        {
            ("scratch-e", "best@E"): [0.953, 0.955, 0.954],
            ("scratch-b", "best@B"): [0.957, 0.958, 0.956],
            ("finetune", "best@E"): ft,
            ("finetune-random", "best@E"): [0.940, 0.942, 0.941],
        }
    )
    analysis = replace(PRE, budgets=("E", "B"))
    entries = {v["comparison_id"]: v for v in claims(results, analysis, "capped")}
    control = entries["control"]
    assert control["role"] == "control" and "p_holm" not in control
    assert entries["1@E"]["holm_family"] == 1  # the one secondary: claim 1 at E alone
    assert entries["1@E"]["p_holm"] == pytest.approx(entries["1@E"]["p_noninferiority"])


def test_a_nan_accuracy_is_named_not_called_too_few_seeds():
    v = noninferiority([0.95, math.nan, 0.96], [0.94, 0.95, 0.95], MARGIN)
    assert v["verdict"] == "inconclusive (1 run(s) without an accuracy (NaN): no test on them)"
    results = _claim3_cells([0.80, math.nan, 0.81], [0.990, 0.991, 0.992])
    assert "NaN" in claim3(results, PRE, "capped")["verdict"]


def test_a_difference_exactly_at_minus_the_margin_is_not_supported():
    """Equal runs on each side, a difference of exactly -margin: H0 (diff <= -margin) is not rejected."""
    margin = 0.01
    a, b = [0.56, 0.56, 0.56], [0.57, 0.57, 0.57]  # in floating point 0.56 - 0.57 = -0.0099999999999999
    v = noninferiority(a, b, margin, n_test=None)
    assert v["se"] == 0 and -margin < v["diff"] < -margin + 1e-12  # the rounding lies on the 'above' side
    assert v["verdict"].startswith("inconclusive") and v["p_noninferiority"] == 1.0
