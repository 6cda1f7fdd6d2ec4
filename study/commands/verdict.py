"""`rethink verdict TABLE.csv`: the report's analysis on any long table of per-seed results (a report's
runs.csv, another tool's runs, or published numbers as synthetic seeds): prints the verdicts and writes
them as JSON in the report's schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.plan.study_tables import Verdict
from study.verdict.analysis import analyse, infer_mode
from study.verdict.claims import Analysis, accs, claim1_cells
from study.verdict.runs_table import TableError, pooled_by_seed, read_runs


def add_verdict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "table", help="CSV with columns arm, pick, seed, test_acc (optional: level, base_seed, n_test, run_id)"
    )
    p.add_argument("--margin", type=float, default=0.5, help="non-inferiority margin, accuracy points")
    p.add_argument(
        "--confidence",
        type=float,
        default=0.975,
        help="one-sided confidence (0.975: alpha 0.025, the usual convention)",
    )
    p.add_argument("--primary", default="1@B", help="the primary comparison: 1@E, 1@B, 1@P, 2, 3, 4@E, 4@B or 4@P")
    p.add_argument(
        "--arch-margin", type=float, default=0.0, help="claim 4: points the pruned architecture must beat uniform by"
    )
    p.add_argument("--budgets", default="E,B,P", help="budgets claim 1 is judged at, comma-separated")
    p.add_argument("--min-seeds", type=int, default=2, help="an arm with fewer seeds is inconclusive (too few seeds)")
    p.add_argument(
        "--mode",
        choices=("capped", "pareto", "fixed-budget"),
        default=None,
        help="picks' naming (default: from the table)",
    )
    p.add_argument("--json", default=None, help="where to write the verdicts (default: TABLE's stem + .verdict.json)")
    p.add_argument("--figure", default=None, help="also draw the verdicts at a glance as a PNG at this path")


def run_verdict(args: argparse.Namespace) -> int:
    path = Path(args.table)
    budgets = tuple(b.strip() for b in args.budgets.split(",") if b.strip())
    try:
        v = Verdict(
            margin=args.margin,
            confidence=args.confidence,
            budgets=budgets,
            min_seeds=args.min_seeds,
            primary=args.primary,
            arch_margin=args.arch_margin,
        )
    except ValueError as e:
        first = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
        where = ".".join(str(x) for x in first["loc"]) or "options"
        raise TableError(f"--{where.replace('_', '-')}: {first['msg'].removeprefix('Value error, ')}") from None
    table = read_runs(path)
    every = [r for rs in table.results.values() for r in rs]
    mode = args.mode or infer_mode(every)
    analysis = Analysis(v.margin_fraction, v.confidence, v.budgets, (), v.min_seeds, v.primary, v.arch_margin / 100)
    levels = {k: table.results[k] for k in sorted(table.results)}
    pooled = pooled_by_seed(levels) if len(levels) > 1 else every
    needs = claim1_cells(mode, v.primary[2:]) if v.primary.startswith("1@") else []
    for arm, pick in needs:
        if not accs(pooled, arm, pick):
            raise TableError(
                f"{path}: no rows for {arm}:{pick}, which the primary comparison {v.primary} needs in {mode} mode "
                f"(give those runs, or name another --primary)"
            )
    out = {"header": {"table": str(path), "mode": mode, "analysis": analysis.describe(), "percent_read": table.percent}}
    if len(levels) > 1:
        out["levels"] = {}
        for level, results in levels.items():
            verdicts, primary = analyse(results, analysis, mode)
            out["levels"][level] = {"primary": primary, "claims": verdicts}
            print(f"level {level}: {primary}")
        out["header"]["pooled"] = "each cell's seeds averaged across the levels before the tests (paired by seed)"
    verdicts, primary = analyse(pooled, analysis, mode)
    out |= {"primary": primary, "claims": verdicts}
    if table.percent:
        print("test_acc read as percent (values above 1)")
    print(("pooled over levels: " if len(levels) > 1 else "") + primary)
    for c in verdicts:
        print(f"[{c.get('role', '')}] claim {c['claim']}: {c['verdict']}")
    target = Path(args.json) if args.json else path.with_suffix(".verdict.json")
    try:
        target.write_text(json.dumps(out, indent=2, default=float))
    except OSError as e:
        raise TableError(f"--json {target}: cannot write ({e.strerror})") from None
    print(f"verdicts: {target}")
    if args.figure:
        from study.verdict.verdict_figure import verdict_figure

        figure = Path(args.figure)
        if figure.suffix.lower() != ".png":
            raise TableError(f"--figure {figure}: give a path ending in .png")
        try:
            verdict_figure(verdicts, analysis, figure)
        except OSError as e:
            raise TableError(f"--figure {figure}: cannot write ({e.strerror})") from None
        print(f"figure: {figure}")
    return 0
