"""Operating points: a spec with `prune.ratios` is one setting per level. This reads the levels' reports
and draws test accuracy against FLOPs reduction per arm, with the claim verdicts per level and pooled."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from study.plan.spec import Spec, SpecError  # noqa: E402

from .analysis import analyse  # noqa: E402
from .architectures import EFFICIENCY_FIGURE, efficiency_figure, stops_paying  # noqa: E402
from .claims import Analysis  # noqa: E402
from .runs_table import pooled_by_seed, read_runs  # noqa: E402
from .styles import arm_colour, marker  # noqa: E402

ROWS = [  # (arm, pick) drawn on the trade-off figure: the untuned large model and each arm's matched pick
    ("unpruned", "paper"),
    ("finetune", "best@E"),
    ("finetune-random", "best@E"),
    ("scratch-e", "best@E"),
    ("scratch-b", "best@B"),
    ("lottery", "best@E"),
    ("uniform", "best@B"),  # Section 5's architectures at the base's training compute
    ("guided", "best@B"),
    ("transferred", "best@B"),
]


def read_report(reports: Path, level: Spec) -> dict:
    path = reports / level.name / "verdict.json"
    if not path.is_file():
        raise SpecError(f"no report for setting {level.name!r} ({path}); run `rethink report` on its spec first")
    return json.loads(path.read_text())


def level_rows(levels: list[Spec], verdicts: list[dict]) -> pd.DataFrame:
    rows = []
    for level, v in zip(levels, verdicts, strict=True):
        reduction = float(v["header"]["flops_reduction"].rstrip("%"))
        for r in v["table"]:
            if (r["arm"], r["choice"]) in ROWS:
                rows.append(
                    {
                        "setting": level.name,
                        "ratio": level.prune.ratio,
                        "flops_reduction_pct": reduction,
                        "arm": r["arm"],
                        "choice": r["choice"],
                        "test_acc_mean": 100 * r["test_acc_mean"],
                        "test_acc_std": 100 * (r["test_acc_std"] or 0.0),
                        "seeds": r["seeds"],
                    }
                )
    return pd.DataFrame(rows)


def pooled_verdicts(reports: Path, levels: list[Spec], verdicts: list[dict]) -> tuple[list[dict], str]:
    """The claims pooled over levels: each cell's seeds averaged across the levels (from each level's
    runs.csv) before the tests, since a seed's runs at every level share its base; under the analysis the
    levels were reported with (post hoc when they were, or when they differ)."""
    tables = {}
    for level in levels:
        path = reports / level.name / "runs.csv"
        if not path.is_file():
            raise SpecError(f"no runs.csv in the report of {level.name!r} ({path}); run `rethink report` on it again")
        tables[level.name] = read_runs(path).results[""]
    fields = [v["header"].get("analysis_fields") for v in verdicts]
    if None in fields:
        raise SpecError(f"the report of {levels[fields.index(None)].name!r} predates pooling by seed; report it again")
    first = fields[0]
    why = tuple(first["post_hoc"])
    if any(f != first for f in fields):
        why += ("the levels were reported with different analyses; pooled under the first level's",)
    analysis = Analysis(
        first["margin"],
        first["confidence"],
        tuple(first["budgets"]),
        why,
        first["min_seeds"],
        first["primary"],
        first.get("arch_margin", 0.0),
    )
    return analyse(pooled_by_seed(tables), analysis, verdicts[0]["header"]["mode"])


def tradeoff_figure(table: pd.DataFrame, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (arm, choice), group in table.groupby(["arm", "choice"], sort=False):
        g = group.sort_values("flops_reduction_pct")
        ax.errorbar(
            g.flops_reduction_pct,
            g.test_acc_mean,
            yerr=g.test_acc_std,
            marker=marker(f"{arm}:{choice}"),
            capsize=3,
            color=arm_colour(arm),
            label=f"{arm} {choice}",
        )
    ax.set_xlabel("FLOPs reduction (%)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Accuracy against pruning level, per arm")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=110)
    plt.close(fig)
    return out / "tradeoff.png"


def tradeoff_report(spec: Spec, reports: Path) -> Path:
    """reports/<spec>/: tradeoff.png, levels.csv, tradeoff.md and tradeoff.json (per-level and pooled)."""
    levels = spec.levels()
    verdicts = [read_report(reports, level) for level in levels]
    out = reports / spec.name
    out.mkdir(parents=True, exist_ok=True)
    table = level_rows(levels, verdicts)
    table.to_csv(out / "levels.csv", index=False)
    tradeoff_figure(table, out)
    per_level = [
        {"setting": lv.name, "ratio": lv.prune.ratio, "claim": c["claim"], "verdict": c["verdict"]}
        for lv, v in zip(levels, verdicts, strict=True)
        for c in v["claims"]
    ]
    pooled, primary = pooled_verdicts(reports, levels, verdicts)
    lines = [f"# {spec.name}: operating points {list(spec.prune.ratios)}", "", table.to_markdown(index=False), ""]
    lines += ["## Verdicts per level", ""] + [
        f"- {r['setting']}: claim {r['claim']}: **{r['verdict']}**" for r in per_level
    ]
    lines += ["", "## Pooled over levels (each seed averaged across the levels before the tests)", "", primary, ""]
    lines += [
        f"- claim {p['claim']}: **{p['verdict']}**" + (f" (estimate {100 * p['diff']:+.2f} pp)" if "diff" in p else "")
        for p in pooled
    ]
    efficiency = [
        {"setting": lv.name, "ratio": lv.prune.ratio, **row}
        for lv, v in zip(levels, verdicts, strict=True)
        for row in v.get("efficiency", [])
    ]
    if efficiency:
        efficiency_figure(efficiency, out / EFFICIENCY_FIGURE)
        pd.DataFrame(efficiency).to_csv(out / "efficiency.csv", index=False)
        budget = next((b for b in ("B", "E", "P") if any(r["budget"] == b for r in efficiency)), "B")
        judged = [
            (lv.prune.ratio, c["verdict"])
            for lv, v in zip(levels, verdicts, strict=True)
            for c in v["claims"]
            if c.get("comparison_id") == f"4@{budget}"
        ]
        sentence = stops_paying(judged)
        lines += ["", f"## Parameter efficiency (Section 5, budget {budget})", "", sentence, ""]
        lines += [f"![parameter efficiency]({EFFICIENCY_FIGURE})", ""]
        lines += [f"- ratio {r}: claim 4 at budget {budget}: **{v}**" for r, v in sorted(judged)]
    (out / "tradeoff.md").write_text("\n".join(lines) + "\n")
    record = {
        "spec": spec.name,
        "levels": [lv.name for lv in levels],
        "per_level": per_level,
        "pooled": pooled,
        "pooled_primary": primary,
        "table": json.loads(table.to_json(orient="records")),
    }
    if efficiency:
        record["efficiency"] = efficiency
        record["efficiency_verdict"] = sentence
    (out / "tradeoff.json").write_text(json.dumps(record, indent=2, default=float))
    print(f"\n{spec.name}: operating points")
    print(table.to_string(index=False))
    for p in pooled:
        print(f"pooled claim {p['claim']}: {p['verdict']}")
    print(f"trade-off: {(out / 'tradeoff.md').resolve()} (tradeoff.png, levels.csv, tradeoff.json)")
    return out
