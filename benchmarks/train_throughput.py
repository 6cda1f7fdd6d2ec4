"""Images/s of one training epoch: the fast loop against the paper-style reference loop, same run.

VGG-16 and ResNet-56 at full width and pruned (l1-norm vgg16-a / resnet56-b), batch 64 and 128.
CPU: a slice of ../shared/data/cifar10-5k.npz; CUDA: synthetic CIFAR-shaped data at 50k images.
Prints one JSON object; ratios are medians over repeated epochs, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rethink.data import Split, load_dataset  # noqa: E402
from rethink.models import build_model, default_spec  # noqa: E402
from rethink.prune import PruneConfig, prune  # noqa: E402
from rethink.reference import reference_train  # noqa: E402
from rethink.train import Runtime, TrainConfig, seed_everything, train  # noqa: E402

SETTINGS = [("vgg16", None), ("vgg16", "vgg16-a"), ("resnet56", None), ("resnet56", "resnet56-b")]


def data(device: str, images: int) -> Split:
    if device.startswith("cuda"):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (images, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, images)
    else:
        ds = load_dataset(f"npz:{REPO.parent / 'shared' / 'data' / 'cifar10-5k.npz'}")
        x, y = ds.x_train[:images], ds.y_train[:images]
    return Split(x, y, x[:64], y[:64], 10, "val")


def model_for(name: str, variant: str | None):
    spec = default_spec(name)
    seed_everything(0)
    model = build_model(spec)
    if variant:
        model = prune(model, spec, PruneConfig("l1-norm", variant=variant)).model
    return model


def median_rate(history, skip: int = 1) -> float:
    rates = [e.images_per_s for e in history.epochs[skip:]]
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=None, help="images per epoch (CPU 256, CUDA 50000)")
    p.add_argument("--repeats", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--batches", default="64,128")
    p.add_argument("--models", default="vgg16,resnet56")
    p.add_argument("--no-reference", action="store_true")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    images = args.images or (50_000 if cuda else 256)
    split = data(args.device, images)
    rows = []
    for name, variant in SETTINGS:
        if name not in args.models.split(","):
            continue
        for batch in (int(b) for b in args.batches.split(",")):
            config = TrainConfig(epochs=1 + args.repeats, batch_size=batch, lr=0.01, augment="crop-flip")
            row = {"model": name, "pruned": variant or "", "batch": batch, "images": images}
            row["fast_img_s"] = median_rate(
                train(model_for(name, variant), split, config, runtime=Runtime(args.device, bf16=False))
            )
            if not cuda:
                row["fast_bf16_img_s"] = median_rate(
                    train(model_for(name, variant), split, config, runtime=Runtime(args.device, bf16=True))
                )
            else:
                row["fast_bf16_img_s"] = row["fast_img_s"]  # bf16 autocast is always on for CUDA
            if not args.no_reference:
                model = model_for(name, variant).to(args.device)
                start = time.perf_counter()
                ref = reference_train(model, split, config) if not cuda else None
                row["reference_img_s"] = median_rate(ref) if ref else None
                row["reference_seconds"] = time.perf_counter() - start
                if row["reference_img_s"]:
                    row["ratio_fp32"] = row["fast_img_s"] / row["reference_img_s"]
                    row["ratio_bf16"] = row["fast_bf16_img_s"] / row["reference_img_s"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    out = {
        "benchmark": "train_throughput",
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": rows,
        "median_ratio_fp32": statistics.median([r["ratio_fp32"] for r in rows if r.get("ratio_fp32")] or [0]),
        "median_ratio_bf16": statistics.median([r["ratio_bf16"] for r in rows if r.get("ratio_bf16")] or [0]),
        "cuda_figures": "measured" if cuda else "not measured (no GPU on this machine)",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
