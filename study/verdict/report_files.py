"""The report's tables and files: a paper-shaped table, tuning gaps, verdicts, importances, method notes."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from study.final.evaluation import FinalResult
from study.plan.paper import published

from .claims import ARM_ORDER
from .paper_table import paper_section
from .tables import DASH, markdown, plain


def results_table(results: list[FinalResult], recipes: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """One row per (arm, choice): test accuracy over seeds, both compute accounts, and what the recipe is."""
    df = pd.DataFrame([asdict(r) for r in results])
    table = (
        df.groupby(["arm", "choice"], sort=False)
        .agg(
            test_acc_mean=("test_acc", "mean"),
            test_acc_std=("test_acc", "std"),
            seeds=("seed", "count"),
            epochs=("epochs", "first"),
            train_flops=("train_flops", "mean"),
            pipeline_flops=("pipeline_flops", "mean"),
            params=("params", "first"),
            trial=("trial", "first"),
        )
        .reset_index()
    )
    table["lr"] = table["params"].map(lambda p: p.get("lr"))
    table["schedule"] = table["params"].map(lambda p: p.get("schedule"))
    table["augment"] = table["params"].map(lambda p: p.get("augment"))
    recipes = recipes or {}
    table["recipe"] = [recipes.get((a, c), "") for a, c in zip(table.arm, table.choice, strict=True)]
    table["order"] = table["arm"].map(ARM_ORDER.index)
    table = table.sort_values(["order", "choice"]).drop(columns=["order", "params"]).reset_index(drop=True)
    table["test_acc"] = [
        f"{100 * m:.2f} ± {100 * (0 if math.isnan(s) else s):.2f}"
        for m, s in zip(table.test_acc_mean, table.test_acc_std, strict=True)
    ]
    return table


def importances(studies: dict[str, optuna.Study]) -> pd.DataFrame:
    """Optuna's parameter importance of validation accuracy, one column per study."""
    cols = {}
    for arm, study in studies.items():
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) >= 2:
            try:
                # PED-ANOVA (Optuna 5's default) rates what reaches low targets: negate the accuracy.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # its reminder of exactly that
                    cols[arm] = optuna.importance.get_param_importances(study, target=lambda t: -t.values[0])
            except (RuntimeError, ValueError) as e:  # e.g. a parameter that never varied
                cols[arm] = {"error": str(e)[:80]}
    return pd.DataFrame(cols).fillna(0.0) if cols else pd.DataFrame()


def _numbers(v: dict) -> str:
    """The numbers behind a verdict line: estimate, interval, one-sided p, margin."""
    if "diff" not in v or v["diff"] != v["diff"] or "same_as" in v:
        return ""
    level = v.get("confidence", 0.95)
    text = f" (estimate {100 * v['diff']:+.2f} pp"
    if v.get("ci_low") == v.get("ci_low"):
        text += f", {100 * level:.0f}% CI [{100 * v['ci_low']:+.2f}, {100 * v['ci_high']:+.2f}]"
    for key in ("p_noninferiority", "p_one_sided"):
        if key in v and v[key] == v[key]:
            text += f", one-sided p={v[key]:.3g}"
    if "margin" in v:
        text += f", margin {100 * v['margin']:.2f} pp"
    return text + ")"


VERDICT_PNG = "verdicts.png"  # the verdict figure, drawn before report.md is written, shown at its top
SHOWN = [
    "arm",
    "choice",
    "test_acc",
    "seeds",
    "epochs",
    "lr",
    "schedule",
    "augment",
    "final_train_flops",
    "final_pipeline_flops",
    "trial",
]
FINAL_FLOPS_NOTE = (
    "final_train_flops and final_pipeline_flops: the final runs' own MACs, trained on train+validation; "
    "picks are held to their budgets on the search's account (the section on the picks), and every final run to "
    "its own seed's budget (the table of budgets seed by seed)"
)


def _trial_named(table: pd.DataFrame) -> pd.DataFrame:
    """The trial column says what each row is: a trial's number, or the per-seed base (no study trial)."""
    out = table.copy().astype({"trial": object})
    out["trial"] = [
        "per-seed base" if arm == "unpruned" and (t is None or t != t) else DASH if t is None or t != t else int(t)
        for arm, t in zip(out["arm"], out["trial"], strict=True)
    ]
    return out


def gaps_table(gaps: list[dict]) -> pd.DataFrame:
    """The tuning gaps as a reader reads them: difference and interval in points, seeds as counts, the test
    named; a pick that is its baseline says so instead of numbers."""
    rows = []
    for g in gaps:
        if "diff" not in g:
            rows.append({"arm": g["arm"], "tuned": g["tuned"], "baseline": g["baseline"], "note": g.get("note", "")})
            continue
        rows.append(
            {
                "arm": g["arm"],
                "tuned": g["tuned"],
                "baseline": g["baseline"],
                "difference (pp)": f"{100 * g['diff']:+.2f}",
                "95% interval (pp)": f"[{100 * g['ci_low']:+.2f}, {100 * g['ci_high']:+.2f}]"
                if g["ci_low"] == g["ci_low"]
                else DASH,
                "seeds": f"{g['n_a']}, {g['n_b']}",
                "test": "paired by seed" if g.get("paired") else "Welch",
                "p (two-sided)": f"{g['p_value']:.3g}" if g["p_value"] == g["p_value"] else DASH,
                "note": g.get("note", ""),
            }
        )
    return pd.DataFrame(rows).fillna("")


def write_report(
    out: Path,
    table: pd.DataFrame,
    gaps: list[dict],
    verdicts: list[dict],
    imp: pd.DataFrame,
    header: dict,
    caveats: list[str],
    notes: list[str] = (),
    missing: list[dict] = (),
    primary: str = "",
    selection: tuple[list[str], dict] = ((), {}),
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = table.rename(columns={"train_flops": "final_train_flops", "pipeline_flops": "final_pipeline_flops"})
    shown = table[[*SHOWN, "recipe"]]
    shown.to_csv(out / "table.csv", index=False)
    gaps_df = pd.DataFrame(gaps)
    lines = [f"# {header['spec']}: {header['description']}", ""]
    if primary:
        lines += [f"**{primary}**", ""]
    if (out / VERDICT_PNG).is_file():
        lines += [f"![verdicts at a glance]({VERDICT_PNG})", ""]
    shown_header = {k: v for k, v in header.items() if k not in ("spec", "description", "analysis_fields")}
    if "budgets_macs" in shown_header:  # one unit, said once
        shown_header["budgets (training MACs)"] = shown_header.pop("budgets_macs")
    lines += [f"- {k.replace('_', ' ')}: {plain(v)}" for k, v in shown_header.items()]
    lines += [f"- **caveat**: {c}" for c in caveats]
    records = json.loads(table[[*SHOWN, "recipe", "test_acc_mean", "test_acc_std"]].to_json(orient="records"))
    lines += ["", "## Results in the paper's shape", ""]
    lines += [*paper_section([(header["spec"], {"header": header, "table": records})], published()), ""]
    lines += ["## Test accuracy (%), mean ± std over seeds, with each row's recipe", ""]
    lines += [markdown(_trial_named(shown[SHOWN])), ""]
    lines += [f"({FINAL_FLOPS_NOTE})", ""]
    lines += ["Recipes:", ""] + [
        f"- {r['arm']} {r['choice']}: {r['recipe']}" for r in shown.to_dict(orient="records") if r["recipe"]
    ]
    lines += [""] + [f"- missing: {m['arm']} {m['name']}: {m['why']}" for m in missing]
    lines += ["", *selection[0]]
    if not gaps_df.empty:
        gaps_df.to_csv(out / "tuning_gaps.csv", index=False)
        lines += [
            "## Tuning gap: tuned pick minus baseline (test accuracy; two-sided 95% interval)",
            "",
            markdown(gaps_table(gaps)),
            "",
        ]
    lines += ["## Verdicts", "", f"Analysis: {header.get('analysis', '')}", ""]
    lines += [
        "The primary comparison is tested alone; every other claim is secondary, its one-sided p Holm-adjusted; "
        "the random-selection control (where the spec has it) is a two-sided check outside that family, as is a "
        "comparison with a published (external) model.",
        "",
    ]
    for v in verdicts:
        role = f"[{v['role']}] " if "role" in v else ""
        holm = f" (Holm-adjusted p = {v['p_holm']:.3g})" if "p_holm" in v else ""
        lines.append(f"- {role}Claim {v['claim']}: **{v['verdict']}**" + _numbers(v) + holm)
        for part in v.get("parts", {}).values():
            lines.append(f"  - {part['part']}: {'holds' if part['holds'] else 'not established'}" + _numbers(part))
        if "caveat" in v:
            lines.append(f"  - {v['caveat']}")
        for key in ("small_lr", "interaction", "tuned"):
            if key in v:
                lines.append(f"  - {v[key]['what']}" + _numbers(v[key]))
        for band in v.get("lr_bands", []):
            if "diff" in band:
                lines.append(
                    f"  - {band['band']}: ticket {100 * band['ticket_mean']:.2f} vs random init "
                    f"{100 * band['scratch_mean']:.2f} (val acc, {band['n_ticket']} and {band['n_scratch']} trials; "
                    f"descriptive)"
                )
    if notes:
        lines += ["", "## How the comparison was made", ""] + [f"- {n}" for n in notes]
    if not imp.empty:
        imp.to_csv(out / "importances.csv")
        lines += [
            "",
            "## Hyperparameter importance (Optuna, validation accuracy)",
            "",
            markdown(imp, dict.fromkeys(imp.columns, ".3f"), index=True),
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    verdict = {
        "primary": primary,
        "header": header,
        "caveats": caveats,
        "notes": list(notes),
        "missing": list(missing),
        "table": records,
        "tuning_gaps": gaps,
        "claims": verdicts,
        **selection[1],
    }
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2, default=float))
    return {"table": out / "table.csv", "report": out / "report.md", "verdict": out / "verdict.json"}
