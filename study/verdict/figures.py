"""The report's figures: accuracy against training compute (both accounts), best so far, chosen curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from .styles import arm_colour, legend_name, line_style, marker  # noqa: E402


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    front, best = [], -1.0
    for f, a in sorted(points):
        if a > best:
            front.append((f, a))
            best = a
    return front


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_figure(studies: dict[str, optuna.Study], out: Path, budget_lines: dict[str, float]) -> Path:
    return save_figure(pareto_plot(studies, budget_lines), out / "pareto.png")


def pareto_plot(studies: dict[str, optuna.Study], budget_lines: dict[str, float]):
    """Every trial's validation accuracy against its training FLOPs; arms that inherit the base are also
    drawn under the pipeline account (hollow), with the base's training included. Colour: the arm;
    marker: the budget the study searched up to."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for arm, study in studies.items():
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        pts = [(t.user_attrs.get("train_flops", t.values[-1]), t.values[0]) for t in done]
        if not pts:
            continue
        colour, mark, name = arm_colour(arm), marker(arm), legend_name(arm)
        ax.scatter(*zip(*pts, strict=True), color=colour, marker=mark, alpha=0.5, label=f"{name}, train FLOPs")
        ax.step(*zip(*_pareto(pts), strict=True), where="post", color=colour, linestyle=line_style(arm))
        pipe = [(t.user_attrs["pipeline_flops"], t.values[0]) for t in done if "pipeline_flops" in t.user_attrs]
        if pipe and any(p[0] != q[0] for p, q in zip(pipe, pts, strict=False)):
            ax.scatter(
                *zip(*pipe, strict=True), facecolors="none", edgecolors=colour, marker=mark, label=f"{name}, pipeline"
            )
            ax.step(*zip(*_pareto(pipe), strict=True), where="post", color=colour, linestyle=":")
    for label, flops in budget_lines.items():
        ax.axvline(flops, color="grey", linewidth=0.8, linestyle="--")
        ax.annotate(label, (flops, ax.get_ylim()[0]), fontsize=7, rotation=90, va="bottom", ha="right")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (MACs, forward+backward = 3 x forward)")
    ax.set_ylabel("validation accuracy (fraction)")
    ax.set_title("Accuracy against compute, every trial (hollow: with the base's training)")
    ax.legend(fontsize=7)
    return fig


def best_so_far_figure(studies: dict[str, optuna.Study], out: Path) -> Path:
    return save_figure(best_so_far_plot(studies), out / "best_so_far.png")


def best_so_far_plot(studies: dict[str, optuna.Study]):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, study in studies.items():
        vals = [t.values[0] if t.state == TrialState.COMPLETE else np.nan for t in study.get_trials(deepcopy=False)]
        if vals:
            ax.plot(
                np.fmax.accumulate(np.nan_to_num(vals, nan=0.0)),
                color=arm_colour(arm),
                marker=marker(arm),
                linestyle=line_style(arm),
                label=legend_name(arm),
            )
    ax.set_xlabel("trial number (baselines first)")
    ax.set_ylabel("best validation accuracy so far (fraction)")
    ax.set_title("Best so far against trials, per study")
    ax.legend(fontsize=7)
    return fig


def curves_figure(curves: dict[str, dict[str, list[float]]], out: Path) -> Path:
    return save_figure(curves_plot(curves), out / "val_curves.png")


def curves_plot(curves: dict[str, dict[str, list[float]]]):
    """Per-epoch validation accuracy of the chosen configs: colour the arm, solid the tuned picks."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        ax.plot(
            range(1, len(curve["val_acc"]) + 1),
            curve["val_acc"],
            color=arm_colour(label),
            linestyle="-" if ":best" in label else "--",
            marker=marker(label),
            markevery=max(1, len(curve["val_acc"]) // 8),
            label=legend_name(label),
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (fraction)")
    ax.set_title("Per-epoch validation accuracy of the chosen configs (solid: tuned)")
    ax.legend(fontsize=7)
    return fig


def figures(
    studies: dict[str, optuna.Study], curves: dict[str, dict[str, list[float]]], out: Path, budget_lines: dict
) -> list[Path]:
    return [pareto_figure(studies, out, budget_lines), best_so_far_figure(studies, out), curves_figure(curves, out)]


def lr_sensitivity_figure(points: dict[str, list[tuple[float, float]]], out: Path) -> Path:
    return save_figure(lr_sensitivity_plot(points), out / "lr_sensitivity.png")


def lr_sensitivity_plot(points: dict[str, list[tuple[float, float]]]):
    """Validation accuracy against learning rate, every completed trial of every study."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, pts in points.items():
        if pts:
            ax.scatter(
                *zip(*pts, strict=True), color=arm_colour(arm), marker=marker(arm), alpha=0.7, label=legend_name(arm)
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation accuracy (fraction)")
    ax.set_title("Learning-rate sensitivity, every trial")
    ax.legend(fontsize=7)
    return fig
