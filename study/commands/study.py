"""`rethink study`: run a spec end to end and print where its results are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rethink.data import dataset_shape
from study.plan.arch import check_model_fits
from study.plan.cost import check_architectures
from study.plan.load import load_spec, resolve_spec_path
from study.plan.spec import Spec, SpecError
from study.records.paths import writable_dir
from study.records.secrets import redact

from .options import add_engine_args, add_runtime_args, engine_from_args, open_engine, runtime_argv, runtime_from_args
from .specs import cost_lines


def add_study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default="quick", help="a spec TOML path or a shipped name")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field, e.g. --set study.n_trials=4 --set dataset=npz:data.npz",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: sqlite:///PATH, journal:PATH (several workers), postgresql://... "
        "(default: env RETHINK_STORAGE, else sqlite:///optuna.db; put a URL with a password in the env)",
    )
    p.add_argument("--workdir", default="runs", help="folder for checkpoints (reused by digest)")
    add_runtime_args(p)
    add_engine_args(p)
    p.add_argument("--workers", type=int, default=1, help="worker processes on this host (journal storage)")
    p.add_argument("--new-study", action="store_true", help="start fresh studies when the spec changed")
    p.add_argument("--no-report", action="store_true", help="stop after the studies (no final evaluation)")
    p.add_argument(
        "--allow-chance-base",
        action="store_true",
        help="go on when the base is not clearly above chance (refused by default; the report then says so)",
    )
    p.add_argument("--report-dir", default="reports", help="report folder (a subfolder per spec)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the spec will train, stage by stage, its compute and time estimates; train nothing",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="the whole pipeline on a few synthetic images of the spec's shape, one base epoch, one trial per "
        "study (spec name + '-smoke'): checks that the spec runs, not what it finds",
    )
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="train the base, prune, create the studies and their baselines, then stop: "
        "start workers on any host with --worker",
    )
    p.add_argument("--worker", action="store_true", help="join studies a --prepare-only run made (no report)")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: env MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )


def level_overrides(spec: Spec, level: Spec) -> list[str]:
    """`--set` items that turn the spec into one of its operating points (for worker command lines)."""
    if level is spec:
        return []
    return [f"name={level.name}", f"prune.ratio={level.prune.ratio}", "prune.ratios=[]"]


def run_study(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set, args.smoke)  # every spec error is raised before any training
    check_architectures(spec)  # Section 5's arms: sizes that cannot be matched, refused naming the field
    if args.dry_run:
        # a weights file matched key by key, a library model run at its size and the proxy's (a run: run_spec)
        check_model_fits(spec, dataset_shape(spec.dataset, spec.data_root))
        print("\n".join(cost_lines(spec, args.gpus_per_trial)))
        return 0
    # what runs a study (Optuna, MLflow, the report) is imported now: a --dry-run never needs it
    import optuna

    from study.records.storage import storage_url
    from study.verdict.tradeoff import tradeoff_report

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # progress lines, and failures, come from rethink
    if args.smoke:
        args.allow_chance_base = True  # a base on noise learns little; the report says so
        print(f"smoke mode: {spec.name} on {spec.dataset}; checks the pipeline, not the claims", flush=True)
    args.storage = storage_url(args.storage)
    writable_dir(args.workdir, "--workdir")  # checkpoints: refused now, not after the base has trained
    if not (args.no_report or args.worker or args.prepare_only):
        writable_dir(args.report_dir, "--report-dir")
    if args.workers < 1:
        raise SpecError(f"--workers must be >= 1, got {args.workers}")
    runtime = runtime_from_args(args)
    engine = engine_from_args(args)
    if args.workers > 1 and runtime.processes > 1:
        raise SpecError(
            f"--workers {args.workers} with --gpus-per-trial {runtime.processes}: each worker's runs would take the "
            "same GPUs; use one worker per host (--worker on the others) or --engine ray"
        )
    if engine.is_ray and (args.workers > 1 or args.worker or args.prepare_only):
        flag = "--workers N" if args.workers > 1 else "--worker" if args.worker else "--prepare-only"
        raise SpecError(f"--engine ray runs every trial as a Ray task: drop {flag} (it belongs to the local engine)")
    levels = spec.levels()
    complete = True
    with open_engine(engine, args.storage, args.tracking_uri) as cluster:
        for level in levels:
            complete &= _run_level(args, spec, level, runtime, cluster)
    if len(levels) > 1 and complete and not (args.worker or args.prepare_only or args.no_report):
        tradeoff_report(spec, Path(args.report_dir))
    return 0


def _run_level(args: argparse.Namespace, spec: Spec, level: Spec, runtime, cluster=None) -> bool:
    """One setting end to end: studies, then (unless told not to) the final evaluation and report."""
    import pandas as pd

    from study.records.storage import dashboard_command
    from study.search.runner import RunOptions, run_spec

    from .report import report_spec

    worker_cmd = (
        sys.executable,
        "-m",
        "study.commands.cli",
        "study",
        str(resolve_spec_path(args.spec)),
        *[f"--set={s}" for s in [*args.set, *level_overrides(spec, level)]],
        "--workdir",
        args.workdir,
        *runtime_argv(runtime),
        "--worker",
    )  # the storage and tracking URLs go through the environment (RunOptions), never argv: `ps` shows argv
    opts = RunOptions(
        args.storage,
        args.tracking_uri,
        Path(args.workdir),
        runtime,
        args.workers,
        args.new_study,
        args.worker,
        worker_cmd,
        args.prepare_only,
        cluster,
        args.allow_chance_base,
    )
    result = run_spec(level, opts)
    if args.worker or args.prepare_only:
        return result.complete
    spec = level
    table = pd.DataFrame(
        [
            {
                "arm": a.arm,
                "trials": a.n_done,
                "baselines": a.n_baselines,
                "best val acc": round(a.best_val_acc, 4),
                **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in a.best_params.items()},
            }
            for a in result.arms
        ]
    )
    base = f"base val acc {result.trunk.base_val_acc:.4f}" if result.trunk.base_trained else "no base trained"
    print(f"\nspec {spec.name}: {base}; pruned FLOPs {result.trunk.pruned_flops:.3g} of {result.trunk.base_flops:.3g}")
    print(table.to_string(index=False))
    overheads = [a.overhead_fraction for a in result.arms if a.overhead_fraction is not None]
    if overheads:
        print(
            f"time outside training (Optuna, MLflow, arm set-up): {100 * max(overheads):.1f}% of trial wall "
            f"time (worst arm)"
        )
    print(
        f"\nMLflow: {redact(result.tracking_uri)} (spec run {result.root_run}); "
        f"browse with: mlflow ui --backend-store-uri {redact(result.tracking_uri)}"
    )
    print(f"Optuna: {redact(args.storage)}; browse with: {dashboard_command(args.storage)}")
    print(f"best configs: rethink best --spec {spec.name}")
    if not args.no_report:
        if result.complete:
            report_spec(spec, opts, Path(args.report_dir))
        else:
            print("studies unfinished: no report (run the spec again to finish them)", file=sys.stderr)
    return result.complete
