"""Images/s of one training epoch: the fast loop against the paper-style reference loop, same run.

The fast loop is timed in fp32, with bf16 autocast, and on CUDA also compiled.

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
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rethink.data import load_dataset  # noqa: E402
from rethink.models import build_model, default_spec  # noqa: E402
from rethink.prune import PruneConfig, prune  # noqa: E402
from rethink.reference import reference_train  # noqa: E402
from rethink.splits import Split  # noqa: E402
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


def variants(device: str, compile_too: bool) -> dict[str, Runtime]:
    """The fast loop's settings to time: fp32 as the recipe is written, then the device's fast options."""
    out = {"fast_fp32": Runtime(device, bf16=False)}
    out["fast_bf16"] = Runtime(device, bf16=True)  # the CUDA default (with channels_last); on CPU `--bf16 on`
    if compile_too:
        out["fast_bf16_compiled"] = Runtime(device, bf16=True, compile=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=None, help="images per epoch (CPU 256, CUDA 50000)")
    p.add_argument("--repeats", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--batches", default="64,128")
    p.add_argument("--models", default="vgg16,resnet56")
    p.add_argument(
        "--compile", choices=("auto", "on", "off"), default="auto", help="also time torch.compile (auto: CUDA)"
    )
    p.add_argument("--loader-workers", type=int, default=None, help="reference DataLoader workers (CPU 0, CUDA 4)")
    p.add_argument("--no-reference", action="store_true")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    images = args.images or (50_000 if cuda else 256)
    loader_workers = args.loader_workers if args.loader_workers is not None else (4 if cuda else 0)
    compile_too = args.compile == "on" or (args.compile == "auto" and cuda)
    split = data(args.device, images)
    rows = []
    for name, variant in SETTINGS:
        if name not in args.models.split(","):
            continue
        for batch in (int(b) for b in args.batches.split(",")):
            config = TrainConfig(epochs=1 + args.repeats, batch_size=batch, lr=0.01, augment="crop-flip")
            row = {"model": name, "pruned": variant or "", "batch": batch, "images": images}
            for label, runtime in variants(args.device, compile_too).items():
                history = train(model_for(name, variant), split, config, runtime=runtime)
                row[f"{label}_img_s"] = median_rate(history)
                row[f"{label}_epoch_s"] = statistics.median(e.seconds for e in history.epochs[1:])
            if not args.no_reference:
                ref = reference_train(model_for(name, variant), split, config, loader_workers, args.device)
                row["reference_img_s"] = median_rate(ref)
                row["reference_epoch_s"] = statistics.median(e.seconds for e in ref.epochs[1:])
                for label in variants(args.device, compile_too):
                    row[f"ratio_{label.removeprefix('fast_')}"] = row[f"{label}_img_s"] / row["reference_img_s"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    ratio_keys = sorted({k for r in rows for k in r if k.startswith("ratio_")})
    out = {
        "benchmark": "train_throughput",
        "device": torch.cuda.get_device_name() if cuda else args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "reference_loader_workers": loader_workers,
        "results": rows,
        **{f"median_{k}": statistics.median(r[k] for r in rows if k in r) for k in ratio_keys},
        "cuda_figures": "measured" if cuda else "not measured (no GPU on this machine)",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
