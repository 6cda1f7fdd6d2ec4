"""Command-line options that choose how to run (device, bf16, channels_last, compile, fusion), never what to
train."""

from __future__ import annotations

import argparse

from rethink.runtime import FUSE_MODES, Runtime

SWITCH = {"auto": None, "on": True, "off": False}


def add_runtime_args(p: argparse.ArgumentParser, fuse: bool = True) -> None:
    """The runtime options; `fuse` for the commands that train groups of runs (study, report)."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--bf16", choices=tuple(SWITCH), default="auto", help="bf16 autocast (auto: on CUDA; on CPU when on)"
    )
    p.add_argument(
        "--channels-last",
        choices=tuple(SWITCH),
        default="auto",
        help="channels_last memory layout (auto: on CUDA; on CPU it speeds some models up, slows others)",
    )
    p.add_argument(
        "--compile",
        choices=("off", "on"),
        default="off",
        help="torch.compile the model (on CUDA: reduce-overhead mode, the step captured in CUDA graphs); "
        "compiled code is reused by later trials of the same architecture in one worker",
    )
    if not fuse:
        return
    p.add_argument(
        "--fuse",
        choices=FUSE_MODES,
        default="auto",
        help="how runs that train as a group (the final evaluation's per-seed bases, then its picks x seeds; a "
        "study's baselines) train: stacked = one computation over the runs' stacked weights, parallel = one "
        "thread per run, off = one after another (auto: stacked on CUDA, parallel on a CPU with 2+ threads)",
    )


def runtime_from_args(args: argparse.Namespace) -> Runtime:
    return Runtime(
        args.device, SWITCH[args.channels_last], SWITCH[args.bf16], args.compile == "on", getattr(args, "fuse", "auto")
    )


def runtime_argv(runtime: Runtime) -> tuple[str, ...]:
    """The options that give `runtime` back, for worker command lines."""
    name = {v: k for k, v in SWITCH.items()}
    return (
        *("--device", runtime.device, "--bf16", name[runtime.bf16], "--channels-last", name[runtime.channels_last]),
        *("--compile", "on" if runtime.compile else "off", "--fuse", runtime.fuse),
    )


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: env MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    p.add_argument("--experiment", default="rethink", help="MLflow experiment name")
