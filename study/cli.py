"""The `rethink` command."""

from __future__ import annotations

import argparse
import importlib
import sys

from rethink.checkpoint import CheckpointError
from rethink.data import AUGMENTATIONS, DataError
from rethink.models import ModelError
from rethink.prune import PruneError
from rethink.train import SCHEDULES, ConfigError, TrainConfig

from .lifecycle import run_guarded
from .runtime_options import add_runtime_args
from .spec import SpecError


def add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--dataset", default="digits", help="digits, cifar10, cifar100 or npz:PATH")
    p.add_argument("--data-root", default="data", help="folder holding (or receiving) CIFAR files")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing (needs internet)")
    p.add_argument("--model", default="vgg11")
    p.add_argument("--width-scale", type=float, default=1.0, help="scale every registered width")
    p.add_argument("--widths", default=None, help="comma-separated per-layer widths (overrides --width-scale)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--augment", choices=AUGMENTATIONS, default=d.augment)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-fraction", type=float, default=0.1)
    add_runtime_args(p)
    p.add_argument("--out", default="runs", help="folder for checkpoints")


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: env or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="rethink", help="MLflow experiment name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rethink", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one model and record one MLflow run")
    add_train_args(p)
    p.add_argument(
        "--sparsity",
        type=float,
        default=0.0,
        help="Network Slimming: L1 strength on BN scales (paper: 1e-4 VGG, 1e-5 ResNet/DenseNet)",
    )
    p.add_argument("--sfp-ratio", type=float, default=None, help="soft filter pruning: zero this share each epoch")
    add_tracking_args(p)

    p = sub.add_parser("prune", help="prune a checkpoint; record FLOPs and params before and after")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `rethink train`")
    p.add_argument("--method", required=True, help="l1-norm, slimming, sfp, thinet, magnitude, lottery")
    p.add_argument("--ratio", type=float, default=None, help="fraction removed, in [0, 1)")
    p.add_argument("--variant", default=None, help="l1-norm layouts: vgg16-a, resnet56-a/b, resnet110-a/b")
    p.add_argument("--min-channels", type=int, default=1, help="slimming: channels kept at least per layer")
    p.add_argument("--scope", default="global", choices=("global", "layer"), help="magnitude threshold scope")
    p.add_argument("--dataset", default=None, help="thinet calibration images (default: the checkpoint's)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="pruned checkpoint path (default: beside the input)")
    add_tracking_args(p)

    p = sub.add_parser("study", help="run a spec: base, prune, one Optuna study per arm")
    from .study_command import add_study_args

    add_study_args(p)
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: env or sqlite:///mlflow.db)")

    p = sub.add_parser("report", help="final evaluation with seeds on the test set, then the report")
    from .report_command import add_report_args

    add_report_args(p)

    p = sub.add_parser("serve", help="MLflow server + optuna-dashboard on 127.0.0.1 (the local team stack)")
    from .serve import add_serve_args

    add_serve_args(p)

    p = sub.add_parser("summary", help="one table across finished reports, in the shape of the paper's tables")
    from .summary import add_summary_args

    add_summary_args(p)

    p = sub.add_parser("best", help="best config of each arm, from the MLflow tracking store or server")
    p.add_argument("--spec", required=True, help="spec name (the MLflow experiment)")
    p.add_argument("--max-flops", type=float, default=None, help="only trials with training FLOPs at most this")
    p.add_argument("--max-epochs", type=int, default=None, help="only trials with at most this many epochs")
    p.add_argument(
        "--max-pipeline-flops",
        type=float,
        default=None,
        help="only trials whose pipeline FLOPs (the run plus the base training it inherits) are at most this",
    )
    p.add_argument("--searched-only", action="store_true", help="leave out the baseline trials")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--tracking-uri", default=None)
    return parser


COMMANDS = {  # imported on use, so `rethink --help` stays fast
    "train": "train_command:run_train",
    "prune": "prune_command:run_prune",
    "study": "study_command:run_study",
    "report": "report_command:run_report",
    "serve": "serve:run_serve",
    "best": "query:run_best",
    "summary": "summary:run_summary",
}

USER_ERRORS = (DataError, ModelError, ConfigError, CheckpointError, PruneError, SpecError)


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and end it the one way study/lifecycle.py defines (runs closed, exit code)."""
    args = build_parser().parse_args(argv)
    module, function = COMMANDS[args.command].split(":")
    command = getattr(importlib.import_module(f"study.{module}"), function)
    return run_guarded(args.command, lambda: command(args), USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
