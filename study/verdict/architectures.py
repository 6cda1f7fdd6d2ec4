"""The report's Section 5 part: the architectures the arms trained (the pruned one and its uniform, guided
and transferred twins) as a per-layer figure and a table of their sizes, and test accuracy against
parameters for each (the parameter-efficiency view; across operating points, `tradeoff.py` joins them)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rethink.flops import param_count  # noqa: E402
from rethink.models import build_model  # noqa: E402
from rethink.models.external import is_external  # noqa: E402
from rethink.models.layout import out_shares  # noqa: E402
from rethink.prune.patterns import is_unstructured  # noqa: E402
from study.final.evaluation import FinalResult  # noqa: E402
from study.search.trunk import Trunk  # noqa: E402

from .figures import save_figure  # noqa: E402
from .styles import arm_colour  # noqa: E402

ARCH_FIGURE = "architectures.png"
EFFICIENCY_FIGURE = "efficiency.png"
# The cell of each architecture at each budget: the pruned one is the Scratch arms' (Section 5 trains it
# from scratch too), the others their own arm's.
CELLS = {"pruned": {"E": ("scratch-e", "best@E"), "B": ("scratch-b", "best@B"), "P": ("scratch-b", "best@P")}}


def cell(arch: str, budget: str) -> tuple[str, str]:
    return CELLS.get(arch, {}).get(budget, (arch, f"best@{budget}"))


def sizes(trunk: Trunk) -> dict[str, dict]:
    """Parameters and MACs of the pruned architecture and of each architecture arm (the search's trunk;
    every final seed matches its own pruned model the same way: its final runs' params arch_params and
    arch_macs)."""
    if not trunk.arch:
        return {}
    p = trunk.pruned
    out = {"pruned": {"params": param_count(p.model, nonzero=is_unstructured(p)), "macs": trunk.pruned_flops}}
    for arm, d in trunk.arch.items():
        out[arm] = {"params": d.params, "macs": d.macs, "matched": d.match, "difference": d.error}
    return out


def fractions(trunk: Trunk) -> dict[str, list[float]]:
    """Per layer, the kept share of the base's channels (structured; a library model's conv and linear
    outputs) or conv weights (unstructured)."""
    p, base = trunk.pruned, trunk.base_spec
    if is_unstructured(p):
        names = list(p.masks)
        numel = {n: p.masks[n].numel() for n in names}
        out = {"pruned": [float(p.masks[n].float().mean()) for n in names]}
        for arm, d in trunk.arch.items():
            out[arm] = [d.kept[n] / numel[n] for n in names]
        return out
    if is_external(base.model):  # a library model: each conv's and linear layer's outputs, from its layout
        full = build_model(base)
        return {
            name: out_shares(json.loads(spec.layout or "{}"), full)
            for name, spec in (("pruned", p.spec), *((arm, d.spec) for arm, d in trunk.arch.items()))
        }
    out = {"pruned": [w / b for w, b in zip(p.spec.widths, base.widths, strict=True)]}
    for arm, d in trunk.arch.items():
        out[arm] = [w / b for w, b in zip(d.spec.widths, base.widths, strict=True)]
    return out


def width_figure(trunk: Trunk, path: Path) -> Path:
    fr = fractions(trunk)
    what = "conv weights kept (density)" if is_unstructured(trunk.pruned) else "channels kept (width / base width)"
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for name, ys in fr.items():
        colour = "tab:green" if name == "pruned" else arm_colour(name)
        ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, lw=1.2, color=colour, label=name)
    ax.set_xlabel("layer (in the order the network computes)")
    ax.set_ylabel(what)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{trunk.spec.model}: the pruned architecture and its same-size twins")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def efficiency_points(results: list[FinalResult], size: dict[str, dict], budgets) -> list[dict]:
    """Test accuracy (mean ± std over final seeds) of each architecture's cell at each budget, beside its
    parameters."""
    rows = []
    for arch, s in size.items():
        for budget in budgets:
            arm, pick = cell(arch, budget)
            accs = [r.test_acc for r in results if r.arm == arm and r.choice == pick]
            if accs:
                rows.append(
                    {
                        "architecture": arch,
                        "budget": budget,
                        "cell": f"{arm}:{pick}",
                        "params": s["params"],
                        "macs": s["macs"],
                        "test_acc_mean": 100 * float(np.mean(accs)),
                        "test_acc_std": 100 * float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                        "seeds": len(accs),
                    }
                )
    return rows


def efficiency_figure(rows: list[dict], path: Path, x: str = "params") -> Path:
    """Test accuracy against parameters, one series per architecture and budget (lines join operating points
    when there are several)."""
    fig, ax = plt.subplots(figsize=(7, 4.3))
    series: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        series.setdefault((r["architecture"], r["budget"]), []).append(r)
    markers = {"E": "o", "B": "s", "P": "^"}
    for (arch, budget), pts in series.items():
        pts = sorted(pts, key=lambda r: r[x])
        colour = "tab:green" if arch == "pruned" else arm_colour(arch)
        ax.errorbar(
            [p[x] for p in pts],
            [p["test_acc_mean"] for p in pts],
            yerr=[p["test_acc_std"] for p in pts],
            marker=markers.get(budget, "D"),
            capsize=3,
            color=colour,
            ls="-" if len(pts) > 1 else "none",
            label=f"{arch} (budget {budget})",
        )
    xs = [r[x] for r in rows]
    if xs and max(xs) > 3 * min(xs):  # operating points far apart: a log axis; one setting: plain numbers
        ax.set_xscale("log")
    else:
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.set_xlabel("parameters (non-zero)" if x == "params" else "forward MACs")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Parameter efficiency: each architecture trained from scratch")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def architecture_section(trunk: Trunk, results: list[FinalResult], budgets, out: Path) -> tuple[list[str], dict]:
    """report.md lines and verdict.json entries: the figures, the sizes table and the efficiency points."""
    size = sizes(trunk)
    if not size:
        return [], {}
    width_figure(trunk, out / ARCH_FIGURE)
    rows = efficiency_points(results, size, budgets)
    efficiency_figure(rows, out / EFFICIENCY_FIGURE)
    match = trunk.spec.arch.match
    lines = ["## Architectures (the paper's Section 5)", "", f"![per-layer architectures]({ARCH_FIGURE})", ""]
    lines += [
        "| architecture | parameters | forward MACs | matched on | difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arch, s in size.items():
        diff = f"{100 * s['difference']:+.2f}%" if "difference" in s else "(the target)"
        lines.append(f"| {arch} | {s['params']:,} | {s['macs']:,} | {s.get('matched', '-')} | {diff} |")
    lines += [
        "",
        f"Every architecture arm is matched to the pruned architecture's {match} within "
        f"{100 * trunk.spec.arch.tolerance:g}% (the search's trunk above; each final seed matches its own pruned "
        "model the same way), trained from scratch with its own searched study at every budget: E epochs of "
        "itself, B the base's training compute, P fine-tune's pipeline. Claim 4 compares them paired by seed.",
        "",
        f"![parameter efficiency]({EFFICIENCY_FIGURE})",
        "",
    ]
    return lines, {"architectures": size, "efficiency": rows}


def stops_paying(per_level: list[tuple[float, str]]) -> str:
    """Where the pruned architecture stops paying: (ratio, claim 4 verdict at the primary budget) per level,
    in order of ratio, read as one sentence (descriptive: each level's verdict is its own test)."""
    if not per_level:
        return "claim 4 was not judged at any level"
    ordered = sorted(per_level)
    pays = [r for r, v in ordered if v.removeprefix("post hoc: ") == "supported"]
    if len(pays) == len(ordered):
        return "the pruned architecture beats uniform at every level"
    if not pays:
        return "the pruned architecture beats uniform at no level (no level's claim 4 is supported)"
    others = [r for r, _ in ordered if r not in pays]
    stop = min((r for r in others if r > min(pays)), default=None)
    where = f"; it first stops paying at ratio {stop}" if stop is not None else ""
    return (
        f"the pruned architecture beats uniform at ratios {pays}, not at {others}{where} (each level's own "
        "verdict, not one test)"
    )
