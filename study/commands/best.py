"""`rethink best`: each arm's best config, read from the MLflow tracking store or server."""

from __future__ import annotations

import argparse
import json

from study.records.query import best_configs
from study.records.tracking import configure


def add_best_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", default="quick", help="spec name (its runs are found by their rethink.spec tag)")
    p.add_argument("--max-flops", type=float, default=None, help="only trials with training FLOPs at most this")
    p.add_argument("--max-epochs", type=int, default=None, help="only trials with at most this many epochs")
    p.add_argument(
        "--max-pipeline-flops",
        type=float,
        default=None,
        help="only trials whose pipeline FLOPs (the run plus the base training it inherits) are at most this",
    )
    p.add_argument("--searched-only", action="store_true", help="leave out the baseline trials")
    p.add_argument("--json", action="store_true", help="print JSON (typed values) instead of a table")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: env, else sqlite:///mlflow.db)")


def run_best(args: argparse.Namespace) -> int:
    configure(args.tracking_uri)
    table = best_configs(args.spec, args.max_flops, args.max_epochs, args.max_pipeline_flops, args.searched_only)
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), default=str, indent=2))
    else:
        print(table.to_string(index=False) if not table.empty else "no finished trials within that budget")
    return 0
