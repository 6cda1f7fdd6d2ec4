"""`rethink report`: final evaluation of each arm's chosen configs, then the report and its verdicts."""

from __future__ import annotations

import argparse
from pathlib import Path

from study.final.stage import evaluate_picks
from study.plan.load import load_spec
from study.plan.spec import Spec, SpecError
from study.records.paths import writable_dir
from study.records.storage import storage_url
from study.search.finished import open_finished
from study.search.runner import RunOptions
from study.verdict.stage import Report, write_verdicts
from study.verdict.tradeoff import tradeoff_report

from .options import add_engine_args, add_runtime_args, engine_from_args, open_engine, runtime_from_args


def report_spec(
    spec: Spec,
    opts: RunOptions,
    out_dir: Path,
    partial: bool = False,
    margin: float | None = None,
    confidence: float | None = None,
) -> Path:
    """One setting's stages after the search: its final evaluation, then its verdicts and report files."""
    search = open_finished(spec, opts, partial)
    final = evaluate_picks(search, opts.runtime, opts.cluster)
    report = write_verdicts(search, final, out_dir, margin, confidence)
    print_report(spec, report)
    return report.out


def print_report(spec: Spec, report: Report) -> None:
    caveats, table = report.caveats, report.table
    print(
        f"\n{spec.name}: test accuracy (%), mean ± std over {spec.final.seeds} seeds"
        + (" [PARTIAL: " + "; ".join(caveats) + "]" if caveats else "")
    )
    print(table[["arm", "choice", "test_acc", "seeds", "epochs", "lr", "schedule", "augment"]].to_string(index=False))
    for m in report.missing:
        print(f"missing: {m.arm} {m.name}: {m.why}")
    print(report.primary)
    for v in report.verdicts:
        print(f"[{v.get('role', 'secondary')}] claim {v['claim']}: {v['verdict']}")
    print(f"report: {(report.out / 'report.html').resolve()} (and report.md, table.csv, verdict.json, figures)")
    print(f"MLflow: report.html in the artifacts of the spec run {report.root_run} and its report run {report.run_id}")


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default="quick", help="a spec TOML path or a shipped name")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec field, as for `rethink study`"
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage (default: env RETHINK_STORAGE, else sqlite:///optuna.db)"
    )
    p.add_argument("--workdir", default="runs", help="folder of the spec's checkpoints (as given to `rethink study`)")
    p.add_argument("--out", default="reports", help="report folder (a subfolder per spec)")
    add_runtime_args(p)
    add_engine_args(p)
    p.add_argument("--partial", action="store_true", help="report unfinished studies, with the caveat printed")
    p.add_argument("--smoke", action="store_true", help="report the spec's smoke run (`rethink study SPEC --smoke`)")
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="non-inferiority margin in accuracy points; overriding the spec's [verdict] makes the analysis post hoc",
    )
    p.add_argument("--confidence", type=float, default=None, help="confidence level; an override is post hoc")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: env, else sqlite:///mlflow.db)")


def run_report(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set, args.smoke)
    writable_dir(args.out, "--out")  # before the final evaluation trains anything
    storage = storage_url(args.storage)
    if args.margin is not None and not 0 <= args.margin < 100:
        raise SpecError(f"--margin {args.margin}: expected accuracy points in [0, 100), e.g. --margin 0.5")
    if args.confidence is not None and not 0.5 < args.confidence < 1:
        raise SpecError(f"--confidence {args.confidence}: expected a level in (0.5, 1), e.g. 0.95")
    levels = spec.levels()
    with open_engine(engine_from_args(args), storage, args.tracking_uri) as cluster:
        opts = RunOptions(storage, args.tracking_uri, Path(args.workdir), runtime_from_args(args), cluster=cluster)
        for level in levels:
            report_spec(level, opts, Path(args.out), args.partial, args.margin, args.confidence)
    if len(levels) > 1:
        tradeoff_report(spec, Path(args.out))
    return 0
