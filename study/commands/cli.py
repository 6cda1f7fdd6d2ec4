"""The `rethink` command. `rethink --help` imports nothing heavy: each subcommand's options are built, and its
libraries imported, only when that subcommand is named."""

from __future__ import annotations

import argparse
import importlib
import sys

from rethink.errors import UserError
from study.records.lifecycle import run_guarded

# name: (one-line help, "module:function" adding its options, "module:function" running it)
COMMANDS = {
    "study": (
        "run a spec: base, prune, one Optuna study per arm, then the final evaluation and report",
        "commands.study:add_study_args",
        "commands.study:run_study",
    ),
    "specs": (
        "every shipped spec as a row of the paper, with what it will cost before it runs",
        "commands.specs:add_specs_args",
        "commands.specs:run_specs",
    ),
    "report": (
        "final evaluation with seeds on the test set, then the report and its verdicts",
        "commands.report:add_report_args",
        "commands.report:run_report",
    ),
    "verdict": (
        "the report's analysis on any CSV of per-seed results (a report's runs.csv, published numbers)",
        "commands.verdict:add_verdict_args",
        "commands.verdict:run_verdict",
    ),
    "best": (
        "best config of each arm, from the MLflow tracking store or server",
        "commands.best:add_best_args",
        "commands.best:run_best",
    ),
    "summary": (
        "one table across finished reports, in the shape of the paper's tables",
        "commands.summary:add_summary_args",
        "commands.summary:run_summary",
    ),
    "serve": (
        "MLflow server + optuna-dashboard on 127.0.0.1 (the local team stack)",
        "commands.serve:add_serve_args",
        "commands.serve:run_serve",
    ),
    "train": ("train one model and record one MLflow run", "commands.train:add_args", "commands.train:run_train"),
    "prune": (
        "prune a checkpoint; record FLOPs and params before and after",
        "commands.prune:add_args",
        "commands.prune:run_prune",
    ),
}


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default where it says something (not None, False or empty) and the help text
    does not already name it."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32, width=110)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or action.option_strings == []:
            return (
                text
                if action.option_strings or "default" in text or default is None
                else f"{text} (default: {default})"
            )
        return f"{text} (default: %(default)s)"


def _function(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(f"study.{module}"), name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s options are added (all of them when `command` is "*", for tests)."""
    parser = argparse.ArgumentParser(
        prog="rethink",
        description="Test the claims of 'Rethinking the Value of Network Pruning' with fair, tracked tuning.",
        epilog="`rethink COMMAND --help` lists a command's options with their defaults.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, adder, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if command in (name, "*"):
            _function(adder)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and end it the one way study/records/lifecycle.py defines (runs closed, exit code)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    run = _function(COMMANDS[args.command][2])
    return run_guarded(args.command, lambda: run(args), (UserError,))


if __name__ == "__main__":
    sys.exit(main())
