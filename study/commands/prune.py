"""`rethink prune`: a checkpoint in, a pruned checkpoint out, one MLflow run with FLOPs and params."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mlflow
import torch

from rethink.arms import arm_epochs, pruned_flops
from rethink.checkpoint import load_checkpoint, save_checkpoint
from rethink.data import load_dataset
from rethink.flops import forward_flops, param_count
from rethink.prune import METHODS, VARIANTS, PruneConfig, PruneError, prune
from rethink.splits import normalized, train_val_split
from rethink.train import TrainConfig
from study.records.tracking import configure, start_run

from .options import add_tracking_args


def calibration_images(dataset: str, root: str, n: int, seed: int, normalize: str = "split") -> torch.Tensor:
    """The first n training images of the validation-split training part, normalized as the checkpoint's
    training was (ThiNet)."""
    ds = load_dataset(dataset, root)
    split = normalized(train_val_split(ds, 0.1, seed), normalize, ds.name)
    mean, std = split.train_stats
    x = torch.from_numpy(split.x_train[:n]).float() / 255.0
    return (x - torch.from_numpy(mean).view(1, -1, 1, 1)) / torch.from_numpy(std).view(1, -1, 1, 1)


def reduction_report(base, base_spec, pruned, base_epochs: int | None) -> dict:
    shape = (base_spec.in_channels, base_spec.input_size, base_spec.input_size)
    f0, f1 = forward_flops(base, shape), pruned_flops(pruned)
    p0, p1 = param_count(base), param_count(pruned.model, nonzero=not pruned.structured)
    report = {
        "flops_before": f0,
        "flops_after": f1,
        "flops_reduction": 1 - f1 / f0,
        "params_before": p0,
        "params_after": p1,
        "params_reduction": 1 - p1 / p0,
    }
    if base_epochs:
        report["scratch_b_epochs"] = arm_epochs("scratch-b", TrainConfig(epochs=base_epochs), f0, f1)
    return report


def add_args(p: argparse.ArgumentParser) -> None:
    """`rethink prune`'s options."""
    methods = sorted(METHODS)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `rethink train`")
    p.add_argument("--method", required=True, help=f"one of {', '.join(methods)}")
    p.add_argument("--ratio", type=float, default=None, help="fraction removed, in [0, 1)")
    layouts = ", ".join(f"{n} ({v.method})" for n, v in sorted(VARIANTS.items()))
    p.add_argument("--variant", default=None, help=f"a named layout of its method: {layouts}")
    p.add_argument("--min-channels", type=int, default=1, help="slimming: channels kept at least per layer")
    p.add_argument("--scope", default="global", choices=("global", "layer"), help="magnitude threshold scope")
    p.add_argument("--dataset", default=None, help="thinet calibration images (default: the checkpoint's)")
    p.add_argument("--data-root", default="data", help="folder holding the CIFAR files")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample and random choices")
    p.add_argument("--out", default=None, help="pruned checkpoint path (default: beside the input)")
    add_tracking_args(p)


def run_prune(args: argparse.Namespace) -> int:
    config = PruneConfig(args.method, args.ratio, args.variant, args.min_channels, args.scope, seed=args.seed)
    base, ckpt = load_checkpoint(args.checkpoint)
    data = None
    if METHODS.get(args.method) and METHODS[args.method].needs_data:
        dataset = args.dataset or ckpt.meta.get("dataset")
        if not dataset:
            raise PruneError(f"{args.method} needs calibration images: pass --dataset")
        normalize = ckpt.meta.get("normalize", "split")  # rethink train --normalize records it when not "split"
        data = calibration_images(dataset, args.data_root, config.calibration_images, args.seed, normalize)
    pruned = prune(base, ckpt.spec, config, data)
    base_epochs = (ckpt.meta.get("train") or {}).get("epochs")
    report = reduction_report(base, ckpt.spec, pruned, base_epochs)
    out = Path(args.out or Path(args.checkpoint).with_name(f"pruned-{args.method}-{args.variant or args.ratio}.pt"))
    meta = {
        "method": config.to_dict(),
        "base_checkpoint": str(args.checkpoint),
        "base_arch": ckpt.spec.to_dict(),
        "keep": {str(k): v for k, v in pruned.keep.items()},
        "report": report,
    } | {k: v for k, v in ckpt.meta.items() if k in ("dataset", "train")}
    save_checkpoint(out, pruned.model, pruned.spec, pruned.masks, meta)

    uri = configure(args.tracking_uri, args.experiment)
    with start_run(f"prune-{args.method}-{args.variant or args.ratio}"):
        mlflow.set_tags({"rethink.kind": "prune", "method": args.method})
        mlflow.log_params(
            {f"prune.{k}": v for k, v in config.to_dict().items()}
            | {"base_model": ckpt.spec.model, "pruned_widths": ",".join(map(str, pruned.spec.widths))}
        )
        mlflow.log_metrics(report)
        mlflow.log_dict(pruned.spec.to_dict(), "pruned_arch_spec.json")
        mlflow.log_dict({str(k): v for k, v in pruned.keep.items()}, "kept_channels.json")
        mlflow.log_dict(report, "reduction_report.json")
        mlflow.log_artifact(str(out), artifact_path="checkpoint")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}))
    print(f"pruned {ckpt.spec.model} with {args.method}: widths {list(pruned.spec.widths)}", file=sys.stderr)
    print(f"pruned checkpoint {out.resolve()}; MLflow {uri}")
    return 0
