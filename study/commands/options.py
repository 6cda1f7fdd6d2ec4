"""Command-line options that choose how to run (device, bf16, channels_last, compile, fusion), never what to
train."""

from __future__ import annotations

import argparse
import contextlib

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
    p.add_argument(
        "--gpus-per-trial",
        type=int,
        default=1,
        help="GPUs that train each run together (DistributedDataParallel: cuda:0..N-1 here, or N GPUs of one "
        "node per Ray task); with --device cpu, N gloo processes share the cores (for tests)",
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
        args.device, SWITCH[args.channels_last], SWITCH[args.bf16], args.compile == "on", getattr(args, "fuse", "auto"),
        args.gpus_per_trial,
    )  # fmt: skip


def runtime_argv(runtime: Runtime) -> tuple[str, ...]:
    """The options that give `runtime` back, for worker command lines."""
    name = {v: k for k, v in SWITCH.items()}
    return (
        *("--device", runtime.device, "--bf16", name[runtime.bf16], "--channels-last", name[runtime.channels_last]),
        *("--compile", "on" if runtime.compile else "off", "--fuse", runtime.fuse),
        *("--gpus-per-trial", str(runtime.processes)),
    )


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: env MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    p.add_argument("--experiment", default="rethink", help="MLflow experiment name")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Where trials and final runs execute: this process (local) or Ray tasks."""
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (and --workers N on this host); ray: every trial, confirmation and final run "
        "is a Ray task (pip install -e '.[ray]')",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (default: env RAY_ADDRESS, else a local Ray instance sized to this machine)",
    )
    p.add_argument(
        "--gpus-per-run",
        default="auto",
        help="GPUs each Ray task declares; fractions pack small runs on one GPU, e.g. 0.25 (default: "
        "--gpus-per-trial when the cluster has GPUs, else 0; also: auto)",
    )
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs each Ray task declares (default 1)")
    p.add_argument(
        "--storage-proxy-host",
        default="127.0.0.1",
        help="address on which the driver serves a SQLite storage to Ray tasks through Optuna's gRPC proxy "
        "(default 127.0.0.1: this host only; give this host's address for a multi-node cluster)",
    )


def engine_from_args(args: argparse.Namespace):
    from study.records.cluster import EngineOptions

    gpus = None if args.gpus_per_run == "auto" else _number(args.gpus_per_run, "--gpus-per-run")
    return EngineOptions(
        args.engine, args.ray_address, gpus, args.cpus_per_run, args.storage_proxy_host, args.gpus_per_trial
    )


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        from study.plan.spec import SpecError

        raise SpecError(f"{flag} {text!r}: expected a number (e.g. 0.25) or auto") from None


def open_engine(engine, storage: str, tracking_uri: str | None):
    """The Ray session for --engine ray (a context manager), or nothing for the local engine."""
    if not engine.is_ray:
        return contextlib.nullcontext(None)
    from study.records.cluster import Cluster

    return Cluster(engine, storage, tracking_uri)
