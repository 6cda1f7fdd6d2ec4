"""`rethink summary SPEC [SPEC ...]`: one table across finished reports, in the shape of Liu et al.'s tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from study.verdict.summary import write_summary


def add_summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", help="spec names or TOML paths whose reports are finished")
    p.add_argument("--reports", default="reports", help="the report folder the specs were reported into")
    p.add_argument("--out", default=None, help="folder for summary.md and summary.csv (default: REPORTS/summary)")


def run_summary(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.reports) / "summary"
    print(write_summary(args.specs, Path(args.reports), out))
    print(f"summary: {(out / 'summary.md').resolve()} and summary.csv")
    return 0
