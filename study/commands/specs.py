"""`rethink specs`: every shipped spec as a row of the paper, with its cost before it runs; and the cost
lines `rethink study SPEC --dry-run` prints for one spec."""

from __future__ import annotations

import argparse

import pandas as pd

from study.plan.cost import shared_bases, spec_cost
from study.plan.cost_record import Cost
from study.plan.load import load_spec
from study.plan.paper import published, row_key
from study.plan.rate import GPU_RATE, GPU_SOURCE, machine_rate, rates_file
from study.plan.spec import SPECS_DIR, Spec
from study.verdict.tables import markdown


def duration(seconds: float) -> str:
    hours = seconds / 3600
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if hours < 1:
        return f"{seconds / 60:.0f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _estimates(spec: Spec, costs: list[Cost]) -> tuple[float, str, str]:
    total = sum(c.total for c in costs)
    here = sum(c.total / machine_rate(spec, c.data) for c in costs)
    return total, duration(here), duration(total / GPU_RATE)


def cost_lines(spec: Spec, gpus_per_run: int = 1) -> list[str]:
    """What the spec will train, stage by stage, per setting; the total and the time estimates (with
    `gpus_per_run` > 1, also the wall time on that many GPUs per run at perfect scaling)."""
    with shared_bases():
        costs = [spec_cost(level) for level in spec.levels()]
    lines = []
    for c in costs:
        stages = pd.DataFrame(
            [{"stage": s.name, "runs": s.runs, "training MACs": f"{s.macs:.3g}"} for s in c.stages]
            + [{"stage": "total", "runs": c.runs, "training MACs": f"{c.total:.3g}"}]
        )
        b = c.budgets
        lines += [
            f"{c.spec}: {c.data.name} ({c.data.n_train} training images, {c.data.num_classes} classes), forward MACs "
            f"per image {c.base_macs:.3g} unpruned, {c.pruned_macs:.3g} pruned ({c.how_pruned()}); budgets E "
            f"{b.epochs_e} epochs, B {b.epochs_b}, P {b.epochs('P')} epochs of the pruned model",
            "",
            markdown(stages),
            "",
            *[
                f"warning: {problem}" + ("" if c.exact else " (with the estimated pruned architecture)")
                for problem in c.problems
            ],
        ]
    total, here, gpu = _estimates(spec, costs)
    lines += [
        f"total: {total:.3g} training MACs (3 × forward MACs × images; searched trials at the mean of their epoch "
        f"range); about {here} on this machine (its measured fp32 training rate for {spec.model}{_kept()}), at "
        f"least {gpu} on {GPU_SOURCE}",
    ]
    if gpus_per_run > 1:
        wall = duration(total / GPU_RATE / gpus_per_run)
        lines.append(
            f"with --gpus-per-trial {gpus_per_run}: at least {wall} of wall time, each run on {gpus_per_run} such GPUs "
            "(the same GPU time at perfect scaling; DistributedDataParallel scales below it)"
        )
    return lines


def _kept() -> str:
    path = rates_file()
    return f", timed once per model and thread count and kept in {path}" if path else ""


def _published(spec: Spec) -> str:
    rows = [published().get(row_key(level), {}) for level in spec.levels()]
    found = sum(len(r) for r in rows)
    return f"{found} numbers" if found else "missing"


def catalogue(names: list[str]) -> pd.DataFrame:
    with shared_bases():
        return _catalogue(names)


def _catalogue(names: list[str]) -> pd.DataFrame:
    rows = []
    for name in names:
        spec = load_spec(name)
        p = spec.prune
        costs = [spec_cost(level) for level in spec.levels()]
        total, here, gpu = _estimates(spec, costs)
        setting = p.variant or ", ".join(f"{100 * r:g}%" for r in (p.ratios or (p.ratio,)))
        rows.append(
            {
                "spec": spec.name,
                "dataset": spec.dataset,
                "model": spec.model,
                "method": p.method + (f" ({p.rounds} rounds)" if p.rounds > 1 else ""),
                "setting": setting,
                "arms": ", ".join(spec.study.arms),
                "budgets": ", ".join(spec.verdict.budgets),
                "E epochs": spec.base.epochs,
                "published": _published(spec),
                "training MACs": f"{total:.3g}",
                "here": here,
                "1 GPU (at least)": gpu,
                "checks": "; ".join(("" if c.exact else "estimated: ") + p for c in costs for p in c.problems)[:120]
                or "ok",
            }
        )
    return pd.DataFrame(rows)


def shipped() -> list[str]:
    return sorted(f.stem for f in SPECS_DIR.glob("*.toml"))


def add_specs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="*", help="spec names or TOML paths (default: every shipped spec)")
    p.add_argument("--csv", default=None, help="also write the catalogue to this CSV file")


def run_specs(args: argparse.Namespace) -> int:
    table = catalogue(args.specs or shipped())
    print(markdown(table))
    print(
        f"\nhere: this machine's measured fp32 training rate per model{_kept()}; 1 GPU: {GPU_SOURCE}. published: "
        "numbers in study/specs/paper_numbers.csv for the spec's row (missing: no source states them yet). "
        "`rethink study SPEC --dry-run` gives a spec's cost stage by stage."
    )
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0
