"""The report: a paper-shaped table, tuning gaps, the scratch-vs-fine-tune test, importances, figures,
and verdict lines never stronger than the data."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from scipy import stats  # noqa: E402

from .final import FinalResult  # noqa: E402

ARM_COLOURS = {
    "unpruned": "black",
    "finetune": "tab:blue",
    "scratch-e": "tab:orange",
    "scratch-b": "tab:green",
    "lottery": "tab:purple",
}
ARM_ORDER = ["unpruned", "finetune", "scratch-e", "scratch-b", "lottery"]
CONFIDENCE = 0.95


def welch(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> dict:
    """mean(a) - mean(b) with Welch's t-test and its confidence interval (NaN where n < 2 or no spread)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    out = {"diff": diff, "n_a": len(a), "n_b": len(b), "p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        out.update(p_value=1.0 if diff == 0 else 0.0, ci_low=diff, ci_high=diff)
        return out
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = stats.t.ppf(0.5 + confidence / 2, dof)
    out.update(
        p_value=float(stats.ttest_ind(a, b, equal_var=False).pvalue),
        ci_low=diff - t * se,
        ci_high=diff + t * se,
        dof=dof,
    )
    return out


def noninferiority_verdict(test: dict, margin: float) -> str:
    """'as good as or better': supported when the CI's lower end clears -margin, contradicted when its
    upper end is below zero, else inconclusive."""
    if math.isnan(test["ci_low"]):
        return "inconclusive (fewer than 2 seeds)"
    if test["ci_low"] > -margin:
        return "supported"
    if test["ci_high"] < 0:
        return "contradicted"
    return f"inconclusive at this sample size (n={test['n_a']}, {test['n_b']})"


def results_table(results: list[FinalResult]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(r) for r in results])
    table = (
        df.groupby(["arm", "choice"], sort=False)
        .agg(
            test_acc_mean=("test_acc", "mean"),
            test_acc_std=("test_acc", "std"),
            seeds=("seed", "count"),
            epochs=("epochs", "first"),
            train_flops=("train_flops", "mean"),
            params=("params", "first"),
        )
        .reset_index()
    )
    table["lr"] = table["params"].map(lambda p: p.get("lr"))
    table["augment"] = table["params"].map(lambda p: p.get("augment"))
    table["order"] = table["arm"].map(ARM_ORDER.index)
    table = table.sort_values(["order", "choice"]).drop(columns=["order", "params"]).reset_index(drop=True)
    table["test_acc"] = [
        f"{100 * m:.2f} ± {100 * (0 if math.isnan(s) else s):.2f}"
        for m, s in zip(table.test_acc_mean, table.test_acc_std, strict=True)
    ]
    return table


def _accs(results, arm, choice):
    return [r.test_acc for r in results if r.arm == arm and r.choice == choice]


def tuning_gaps(results: list[FinalResult]) -> list[dict]:
    """Per arm: tuned best minus each baseline, with a CI."""
    gaps = []
    for arm in sorted({r.arm for r in results if r.arm != "unpruned"}, key=ARM_ORDER.index):
        tuned = _accs(results, arm, "best")
        for baseline in sorted({r.choice for r in results if r.arm == arm} & {"paper", "literature"}):
            gaps.append({"arm": arm, "baseline": baseline, **welch(tuned, _accs(results, arm, baseline))})
    return gaps


def claims(results: list[FinalResult], margin: float, pareto: bool) -> list[dict]:
    """Verdicts on the paper's claims, each with the numbers behind it."""
    out = []
    finetune = _accs(results, "finetune", "best")
    for arm, choice in [("scratch-e", "best@E" if pareto else "best"), ("scratch-b", "best@B" if pareto else "best")]:
        scratch = _accs(results, arm, choice) or _accs(results, arm, "best")
        if scratch and finetune:
            test = welch(scratch, finetune)
            out.append(
                {
                    "claim": f"1: tuned {arm} ({choice}) is as good as or better than tuned fine-tuning",
                    "comparison": f"{arm}:{choice} - finetune:best",
                    "margin": margin,
                    **test,
                    "verdict": noninferiority_verdict(test, margin),
                }
            )
    lottery, scratch_e = _accs(results, "lottery", "best"), _accs(results, "scratch-e", "best")
    if lottery and scratch_e:
        test = welch(scratch_e, lottery)
        out.append(
            {
                "claim": "2: the architecture matters, not the inherited init (scratch-e vs lottery)",
                "comparison": "scratch-e:best - lottery:best",
                "margin": margin,
                **test,
                "verdict": noninferiority_verdict(test, margin),
            }
        )
    lit = {
        arm: welch(_accs(results, arm, "best"), _accs(results, arm, "literature"))
        for arm in ("scratch-e", "scratch-b")
        if _accs(results, arm, "literature") and _accs(results, arm, "best")
    }
    if lit and finetune:
        gains = [t for t in lit.values() if not math.isnan(t["ci_low"])]
        claim1 = [c["verdict"] for c in out if c["claim"].startswith("1:")]
        if gains and all(t["ci_low"] > 0 for t in gains) and claim1 and all(v == "supported" for v in claim1):
            verdict = "supported"
        elif claim1 and all(v == "contradicted" for v in claim1):
            verdict = "contradicted"
        else:
            verdict = "inconclusive at this sample size"
        out.append(
            {
                "claim": "3: weak baselines explain the contradiction (tuning lifts scratch to fine-tuning)",
                "comparison": "scratch:best - scratch:literature",
                "tuning_gain": lit,
                "verdict": verdict,
            }
        )
    return out


def importances(studies: dict[str, optuna.Study]) -> pd.DataFrame:
    """Optuna's parameter importance of validation accuracy, one column per arm."""
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


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    front, best = [], -1.0
    for f, a in sorted(points):
        if a > best:
            front.append((f, a))
            best = a
    return front


def figures(studies: dict[str, optuna.Study], curves: dict[str, dict[str, list[float]]], out: Path) -> list[Path]:
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, study in studies.items():
        pts = [
            (t.user_attrs.get("train_flops", t.values[-1]), t.values[0])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ]
        if not pts:
            continue
        ax.scatter(*zip(*pts, strict=True), color=ARM_COLOURS[arm], alpha=0.5, label=f"{arm} trials")
        ax.step(*zip(*_pareto(pts), strict=True), where="post", color=ARM_COLOURS[arm], label=f"{arm} Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (MACs, forward+backward = 3 x forward)")
    ax.set_ylabel("validation accuracy (fraction)")
    ax.set_title("Accuracy against training FLOPs, every trial")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "pareto.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, study in studies.items():
        vals = [t.values[0] if t.state == TrialState.COMPLETE else np.nan for t in study.get_trials(deepcopy=False)]
        if vals:
            ax.plot(np.fmax.accumulate(np.nan_to_num(vals, nan=0.0)), color=ARM_COLOURS[arm], marker="o", label=arm)
    ax.set_xlabel("trial number")
    ax.set_ylabel("best validation accuracy so far (fraction)")
    ax.set_title("Best so far against trials, per arm")
    ax.legend()
    paths.append(_save(fig, out / "best_so_far.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        arm = label.split(":")[0]
        ax.plot(
            range(1, len(curve["val_acc"]) + 1),
            curve["val_acc"],
            color=ARM_COLOURS.get(arm, "grey"),
            linestyle="-" if label.endswith(":best") else "--",
            label=label,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (fraction)")
    ax.set_title("Per-epoch validation accuracy of the chosen configs (solid: tuned best)")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "val_curves.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    out: Path,
    table: pd.DataFrame,
    gaps: list[dict],
    verdicts: list[dict],
    imp: pd.DataFrame,
    header: dict,
    caveats: list[str],
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    shown = table[["arm", "choice", "test_acc", "seeds", "epochs", "lr", "augment", "train_flops"]]
    shown.to_csv(out / "table.csv", index=False)
    gaps_df = pd.DataFrame(gaps)
    lines = [f"# {header['spec']}: {header['description']}", ""]
    lines += [f"- {k}: {v}" for k, v in header.items() if k not in ("spec", "description")]
    lines += [f"- **caveat**: {c}" for c in caveats]
    lines += ["", "## Test accuracy (%), mean ± std over seeds", "", shown.to_markdown(index=False), ""]
    if not gaps_df.empty:
        gaps_df.to_csv(out / "tuning_gaps.csv", index=False)
        lines += [
            "## Tuning gap: tuned best minus baseline (test accuracy, fraction; Welch 95% CI)",
            "",
            gaps_df.to_markdown(index=False, floatfmt=".4f"),
            "",
        ]
    lines += ["## Verdicts", ""] + [
        f"- Claim {v['claim']}: **{v['verdict']}**"
        + (
            f" (diff {100 * v['diff']:+.2f} pp, 95% CI [{100 * v['ci_low']:+.2f}, {100 * v['ci_high']:+.2f}], "
            f"p={v['p_value']:.3g}, margin {100 * v['margin']:.1f} pp)"
            if "diff" in v
            else ""
        )
        for v in verdicts
    ]
    if not imp.empty:
        imp.to_csv(out / "importances.csv")
        lines += ["", "## Hyperparameter importance (Optuna, validation accuracy)", "", imp.to_markdown(floatfmt=".3f")]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    verdict = {
        "header": header,
        "caveats": caveats,
        "table": json.loads(shown.to_json(orient="records")),
        "tuning_gaps": gaps,
        "claims": verdicts,
    }
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2, default=float))
    return {"table": out / "table.csv", "report": out / "report.md", "verdict": out / "verdict.json"}
