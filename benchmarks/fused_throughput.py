"""Training images/s of N same-architecture runs (seeds) trained as one group, against the same N runs one
after another, same process, same data: the measurement behind `--fuse` (rethink/fuse.py).

Mechanisms, each through rethink's own loop (rethink.train.train_jobs):
- sequential: each run alone (the unfused loop, all threads to one run), the reference;
- stacked: one computation over the runs' stacked weights (vmap; rethink/stacked.py);
- parallel: a thread per run, the cores shared among them (rethink.fuse).
Each run draws its own batches (its seed's order). One epoch of `--steps` batches per run, evaluated
once at the end on one batch; a warm-up run first. Models: the quick model (VGG-11 at half width, digits
8×8), VGG-11 at quarter width and ResNet-20/56 on the CIFAR-10 subset (../shared/data/cifar10-5k.npz, or
synthetic CIFAR-shaped images where it is missing, e.g. on a lent GPU), batch 64 and 128. Prints one
JSON object: median images/s over repeats, and each mechanism's ratio to sequential.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rethink.data import load_dataset  # noqa: E402
from rethink.fuse import train_group  # noqa: E402
from rethink.models import build_model, default_spec  # noqa: E402
from rethink.splits import Split  # noqa: E402
from rethink.train import Job, Runtime, TrainConfig, seed_everything  # noqa: E402

CIFAR5K = REPO.parent / "shared" / "data" / "cifar10-5k.npz"
CASES = [  # (label, dataset, model, width scale, batch)
    ("quick vgg11/2 digits", "digits", "vgg11", 0.5, 64),
    ("vgg11/4 cifar5k", "cifar5k", "vgg11", 0.25, 64),
    ("resnet20 cifar5k b64", "cifar5k", "resnet20", 1.0, 64),
    ("resnet20 cifar5k b128", "cifar5k", "resnet20", 1.0, 128),
    ("resnet56 cifar5k b64", "cifar5k", "resnet56", 1.0, 64),
    ("resnet56 cifar5k b128", "cifar5k", "resnet56", 1.0, 128),
]
MECHANISMS = ("sequential", "stacked", "parallel")


def load(name: str, images: int) -> tuple[Split, int, int]:
    """`images` training images (repeated if the set is smaller), one eval batch; channels and size."""
    if name == "digits":
        ds = load_dataset("digits")
        x, y = ds.x_train, ds.y_train
    elif CIFAR5K.is_file():
        ds = load_dataset(f"npz:{CIFAR5K}")
        x, y = ds.x_train, ds.y_train
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (5000, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 5000)
    reps = -(-images // len(y))
    x, y = np.concatenate([x] * reps)[:images], np.concatenate([y] * reps)[:images]
    return Split(x, y, x[:64], y[:64], 10, "val"), x.shape[1], x.shape[-1]


def timed(mechanism: str, spec, split: Split, n: int, batch: int, device: str) -> float:
    jobs = []
    for seed in range(n):
        seed_everything(seed)
        config = TrainConfig(epochs=1, batch_size=batch, lr=0.05, augment="crop-flip", seed=seed)
        jobs.append(Job(build_model(spec), config))
    fuse = {"sequential": "off", "stacked": "stacked", "parallel": "parallel"}[mechanism]
    runtime = Runtime(device, fuse=fuse)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    outcomes = train_group(jobs, split, runtime, eval_final_only=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise failed[0]
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="1,3,5,8", help="N values")
    p.add_argument("--steps", type=int, default=6, help="timed SGD steps per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", default="", help="comma-separated substrings of the case labels (default: all)")
    p.add_argument("--mechanisms", default=",".join(MECHANISMS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    mechanisms = args.mechanisms.split(",")
    results = []
    for label, dataset, model, scale, batch in CASES:
        if args.cases and not any(c in label for c in args.cases.split(",")):
            continue
        split, channels, size = load(dataset, args.steps * batch)
        spec = default_spec(model, channels, 10, size, scale)
        for n in (int(v) for v in args.runs.split(",")):
            row = {"case": label, "runs": n}
            seconds = {}
            for m in mechanisms:
                if m != "sequential" and n == 1:
                    continue  # one run: nothing to fuse
                timed(m, spec, split, n, batch, args.device)  # warm-up: allocator, kernels, threads
                seconds[m] = statistics.median(
                    timed(m, spec, split, n, batch, args.device) for _ in range(args.repeats)
                )
                row[f"{m}_img_s"] = round(n * args.steps * batch / seconds[m], 1)
            for m in seconds:
                if m != "sequential" and "sequential" in seconds:
                    row[f"{m}_over_sequential"] = round(seconds["sequential"] / seconds[m], 2)
            print(json.dumps(row), file=sys.stderr, flush=True)
            results.append(row)
    cuda = args.device.startswith("cuda")
    print(
        json.dumps(
            {
                "benchmark": "fused_throughput",
                "date": date.today().isoformat(),
                "device": torch.cuda.get_device_name()
                if cuda
                else f"{torch.get_num_threads()}-thread {platform.machine()} CPU",
                "threads": torch.get_num_threads(),
                "versions": {"torch": torch.__version__, "python": platform.python_version()},
                "data": "cifar10-5k.npz" if CIFAR5K.is_file() else "synthetic CIFAR-shaped (cifar10-5k.npz missing)",
                "args": " ".join(sys.argv[1:]),
                "steps": args.steps,
                "repeats": args.repeats,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
