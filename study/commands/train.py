"""`rethink train`: one model, one MLflow run (params, per-epoch metrics, checkpoint, dataset)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlflow

from rethink.augment import AUGMENTATIONS
from rethink.budget import SCHEDULES
from rethink.checkpoint import save_checkpoint
from rethink.data import dataset_names, load_dataset
from rethink.flops import forward_flops, param_count, training_flops
from rethink.models import MODELS, ArchSpec, ModelError, build_model, default_spec
from rethink.prune.sfp import SoftFilterPruning
from rethink.prune.slimming import SparsityPenalty
from rethink.splits import NORMALIZATIONS, normalized, train_val_split
from rethink.train import ConfigError, NonFiniteLoss, TrainConfig, config_digest, seed_everything, train
from study.records.progress import PrintProgress
from study.records.tracking import MlflowEpochLogger, configure, end_failed, log_dataset, start_run

from .options import add_runtime_args, add_tracking_args, runtime_from_args


def add_args(p: argparse.ArgumentParser) -> None:
    """`rethink train`'s options."""
    d = TrainConfig()
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(dataset_names())}")
    p.add_argument("--data-root", default="data", help="folder holding (or receiving) the CIFAR files")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing (needs internet)")
    p.add_argument("--model", default="vgg11", help=f"one of {', '.join(sorted(MODELS))}")
    p.add_argument("--width-scale", type=float, default=1.0, help="scale every registered width")
    p.add_argument("--widths", default=None, help="comma-separated per-layer widths (overrides --width-scale)")
    p.add_argument(
        "--classifier",
        default="default",
        help="VGG head: CIFAR VGGs bn-mlp (Li et al., the default) or linear (slimming code); ImageNet VGGs "
        "torchvision (the default), slimming, or gap (ThiNet's VGG-GAP/-Tiny, vgg16_nobn)",
    )
    p.add_argument("--bn-init", type=float, default=1.0, help="conv BN scale at init (official slimming models: 0.5)")
    p.add_argument(
        "--conv-init",
        default="default",
        help="VGG convs: default, or weight-level (the weight-level code's: a bias, He init over the fan-in)",
    )
    p.add_argument(
        "--normalize", choices=tuple(NORMALIZATIONS), default="split", help="per-channel constants (or the split's own)"
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (SGD)")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 weight decay")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule")
    p.add_argument("--augment", choices=AUGMENTATIONS, default=d.augment, help="augmentation policy")
    p.add_argument("--seed", type=int, default=d.seed, help="init, data order and augmentation seed (>= 0)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the training set held out, stratified")
    add_runtime_args(p, fuse=False)  # one run: nothing to fuse
    p.add_argument("--out", default="runs", help="folder for checkpoints")
    p.add_argument(
        "--sparsity",
        type=float,
        default=0.0,
        help="Network Slimming: L1 strength on BN scales (paper: 1e-4 VGG, 1e-5 ResNet/DenseNet)",
    )
    p.add_argument("--sfp-ratio", type=float, default=None, help="soft filter pruning: zero this share each epoch")
    add_tracking_args(p)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        augment=args.augment,
        seed=args.seed,
    )


def spec_from_args(args: argparse.Namespace, in_channels: int, num_classes: int, size: int) -> ArchSpec:
    spec = default_spec(
        args.model, in_channels, num_classes, size, args.width_scale, args.classifier, args.bn_init, args.conv_init
    )
    if args.widths:
        try:
            widths = tuple(int(w) for w in args.widths.split(","))
        except ValueError as e:
            raise ModelError(f"--widths must be comma-separated integers, got {args.widths!r}") from e
        spec = spec.with_widths(widths)
    build_model(spec)  # validates widths before any tracking starts
    return spec


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # ConfigError names the bad field
    ds = load_dataset(args.dataset, args.data_root, args.download)
    spec = spec_from_args(args, ds.in_channels, ds.num_classes, ds.input_size)
    split = normalized(train_val_split(ds, args.val_fraction, config.seed), args.normalize, ds.name)
    if not args.sparsity >= 0:
        raise ConfigError(f"--sparsity must be >= 0, got {args.sparsity}")
    if args.sfp_ratio is not None and not 0 <= args.sfp_ratio < 1:
        raise ConfigError(f"--sfp-ratio must be in [0, 1), got {args.sfp_ratio}")
    uri = configure(args.tracking_uri, args.experiment)

    seed_everything(config.seed)
    model = build_model(spec)
    init_state = {k: v.clone() for k, v in model.state_dict().items()}  # for the lottery arm
    macs = forward_flops(model, (spec.in_channels, spec.input_size, spec.input_size))
    extras = {"sparsity": args.sparsity, "sfp_ratio": args.sfp_ratio}
    if args.normalize != "split":
        extras["normalize"] = args.normalize
    digest = config_digest(
        {"dataset": ds.name, "arch": spec.to_dict(), "train": config.to_dict(), "val_fraction": args.val_fraction}
        | extras
    )
    with start_run(f"train-{spec.model}-{digest[:6]}") as run:
        mlflow.log_params(
            {
                **{f"train.{k}": v for k, v in config.to_dict().items()},
                "dataset": ds.name,
                "model": spec.model,
                "widths": ",".join(map(str, spec.widths)),
                "val_fraction": args.val_fraction,
                **extras,
            }
        )
        runtime = runtime_from_args(args)
        mlflow.set_tags({"rethink.kind": "train", "rethink.digest": digest, "rethink.runtime": runtime.describe()})
        log_dataset(ds)
        mlflow.log_metrics({"flops_forward": macs, "params": param_count(model)})
        callbacks = [MlflowEpochLogger(run.info.run_id, split.eval_name), PrintProgress(config.epochs, "train ")]
        if args.sparsity:
            callbacks.insert(0, SparsityPenalty(args.sparsity))
        if args.sfp_ratio:
            callbacks.insert(0, SoftFilterPruning(args.sfp_ratio))
        start = time.perf_counter()
        try:
            history = train(model, split, config, callbacks, runtime)
        except NonFiniteLoss as e:
            end_failed(str(e))
            print(f"rethink train: run {run.info.run_id} FAILED: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            end_failed("interrupted by the user (SIGINT)", "KILLED")
            raise
        wall = time.perf_counter() - start
        meta = {"train": config.to_dict(), "dataset": ds.name, "digest": digest} | extras
        ckpt = save_checkpoint(Path(args.out) / digest / "model.pt", model, spec, meta=meta)
        init_model = build_model(spec)
        init_model.load_state_dict(init_state)
        save_checkpoint(Path(args.out) / digest / "init.pt", init_model, spec, meta=meta | {"epoch": 0})
        mlflow.log_artifact(str(ckpt), artifact_path="checkpoint")
        mlflow.log_dict(spec.to_dict(), "arch_spec.json")
        final = history.final
        mlflow.log_metrics(
            {
                "final_val_acc": final.eval_acc,
                "best_val_acc": history.best_eval_acc,
                "wall_seconds": wall,
                "train_flops": training_flops(macs, history.images_seen),
            }
        )
    print(
        f"val accuracy {final.eval_acc:.4f} (best {history.best_eval_acc:.4f}) after {len(history.epochs)} "
        f"epochs in {wall:.1f}s"
    )
    print(f"MLflow run {run.info.run_id} in {uri}; checkpoint {ckpt.resolve()}")
    print(f"browse: mlflow ui --backend-store-uri {uri}")
    return 0
