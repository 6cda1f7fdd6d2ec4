"""The verdicts at a glance: one row per comparison (the primary first, marked), its estimate with the
interval whose lower end is the one-sided bound at the analysis's confidence, zero and −margin as lines,
and beside each row its verdict word and Holm-adjusted p. Supported, contradicted, inconclusive and missing
are told apart by colour and marker, so the figure reads in grey print too."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .settings import Analysis  # noqa: E402

STYLES = {  # verdict word -> (colour, marker, filled)
    "supported": ("tab:green", "o", True),
    "contradicted": ("tab:red", "X", True),
    "inconclusive": ("tab:orange", "o", False),
    "missing": ("lightgrey", "s", False),
    "control": ("tab:blue", "D", False),
}


def verdict_word(entry: dict) -> str:
    """supported, contradicted, inconclusive or missing (a repeat of another budget's runs, or a part that
    did not run, is missing a test of its own); a control's plain outcome is 'control'."""
    text = entry["verdict"].removeprefix("post hoc: ")
    if "same_as" in entry or text.startswith("missing"):
        return "missing"
    if entry.get("role") == "control":
        return "control"
    for word in ("supported", "contradicted"):
        if text.startswith(word):
            return word
    return "inconclusive"


def interval_of(entry: dict) -> tuple[float, float, float] | None:
    """(estimate, low, high) drawn for an entry, in accuracy points; claim 3 shows its interaction (c)."""
    e = entry["parts"]["c"] if "parts" in entry else entry
    diff, low, high = e.get("diff", math.nan), e.get("ci_low", math.nan), e.get("ci_high", math.nan)
    if any(v is None or math.isnan(v) for v in (diff, low, high)):
        return None
    return 100 * diff, 100 * low, 100 * high


def row_label(entry: dict) -> str:
    cid = entry.get("comparison_id", "")
    what = entry.get("comparison") or entry["claim"].split(":")[0]
    if "parts" in entry:
        what = "claim 3: interaction (ST − SL) − (FT − FP)"
    elif cid.startswith("1@"):
        what = f"claim 1 at {cid[2:]}: {what}"
    elif cid == "2":
        what = f"claim 2: {what}"
    elif cid == "control":
        what = f"control: {what}"
    elif cid.startswith("ext@"):
        what = f"external at {cid[4:]}: {what}"
    return ("PRIMARY  " if entry.get("role") == "primary" else "") + what


def verdict_plot(entries: list[dict], analysis: Analysis):
    """The figure (matplotlib): rows top to bottom, primary first."""
    rows = sorted(entries, key=lambda e: e.get("role") != "primary")
    fig, ax = plt.subplots(figsize=(10, 0.62 * len(rows) + 1.6))
    margin = 100 * analysis.margin
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(-margin, color="tab:red", linewidth=0.9, linestyle="--", label=f"−margin ({-margin:.2f} pp)")
    arch = 100 * analysis.arch_margin
    if arch > 0 and any(e.get("comparison_id", "")[:1] == "4" for e in rows):  # claim 4's superiority margin
        ax.axvline(arch, color="tab:purple", linewidth=0.9, linestyle=":", label=f"claim 4 margin (+{arch:.2f} pp)")
    spans = [v for e in rows if (iv := interval_of(e)) for v in iv[1:]] + [-margin, 0.0, arch]
    lo, hi = min(spans), max(spans)
    pad = 0.08 * (hi - lo or 1)
    for y, e in enumerate(rows):
        word = verdict_word(e)
        colour, mark, filled = STYLES[word]
        iv = interval_of(e)
        if iv is not None:
            diff, low, high = iv
            ax.plot([low, high], [y, y], color=colour, linewidth=2.2 if e.get("role") == "primary" else 1.4)
            ax.plot(diff, y, marker=mark, markersize=9, color=colour, markerfacecolor=colour if filled else "white")
        else:
            ax.plot(lo, y, marker=mark, markersize=8, color=colour, markerfacecolor="white")
        p = f", Holm p = {e['p_holm']:.3g}" if "p_holm" in e else ""
        said = f"same runs as {e['same_as']}" if "same_as" in e else word
        said += " (external, descriptive)" if e.get("role") == "external" else ""
        ax.annotate(
            f"{said}{p}",
            (1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=9,
            color=colour if word != "missing" else "grey",
            fontweight="bold" if e.get("role") == "primary" else "normal",
        )
    ax.set_yticks(range(len(rows)), [row_label(e) for e in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(lo - pad, hi + pad)
    level = 100 * (2 * analysis.confidence - 1)
    ax.set_xlabel(
        f"difference (accuracy points); bars: the {level:.0f}% interval, whose lower end is the one-sided "
        f"{100 * analysis.confidence:.1f}% bound"
    )
    ax.set_title("Verdicts: estimate and interval against zero and −margin (primary first)", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def verdict_figure(entries: list[dict], analysis: Analysis, path: Path) -> Path:
    fig = verdict_plot(entries, analysis)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
