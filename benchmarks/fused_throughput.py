"""Training images/s of N same-architecture runs (seeds) fused into one computation against the same N
runs one after another, same process, same data. The measurement issue 16 asks for before a fused
trainer is built.

Fused: `torch.func.stack_module_state` + `vmap(functional_call)` over the stacked parameters and BN
buffers (each run keeps its own BN statistics; vmap's conv rule runs the N convs as one grouped conv), one
SGD over the stacked tensors, the loss the sum of each run's mean loss (so each run's gradient is its own).
Each run draws its own batches (its seed's order). Sequential: the same steps with each model on its own.
Models: the quick model (VGG-11 at half width, digits 8×8), VGG-11 at quarter width and ResNet-20/56 on
the CIFAR-10 subset (../shared/data/cifar10-5k.npz), batch 64 and 128. Prints one JSON object: median
images/s over repeats, and the fused/sequential ratio.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rethink.data import DeviceLoader, load_dataset, train_val_split  # noqa: E402
from rethink.models import build_model, default_spec  # noqa: E402

CIFAR5K = REPO.parent / "shared" / "data" / "cifar10-5k.npz"
CASES = [  # (label, dataset, model, width scale, batch)
    ("quick vgg11/2 digits", "digits", "vgg11", 0.5, 64),
    ("vgg11/4 cifar5k", f"npz:{CIFAR5K}", "vgg11", 0.25, 64),
    ("resnet20 cifar5k b64", f"npz:{CIFAR5K}", "resnet20", 1.0, 64),
    ("resnet20 cifar5k b128", f"npz:{CIFAR5K}", "resnet20", 1.0, 128),
    ("resnet56 cifar5k b64", f"npz:{CIFAR5K}", "resnet56", 1.0, 64),
    ("resnet56 cifar5k b128", f"npz:{CIFAR5K}", "resnet56", 1.0, 128),
]


def batches(split, n_runs: int, batch: int, steps: int, device) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """`steps` batches for each run, each run in its own seed's order (drawn before timing)."""
    mean, std = split.train_stats
    out = []
    for seed in range(n_runs):
        loader = DeviceLoader(split.x_train, split.y_train, mean, std, batch, "none", shuffle=True, seed=seed,
                              device=device)  # fmt: skip
        it = iter(loader.epoch(0))
        out.append([next(it) for _ in range(steps)])
    return out


def step(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def sequential(spec, data, device) -> float:
    start = time.perf_counter()
    for seed, run in enumerate(data):
        torch.manual_seed(seed)
        model = build_model(spec).to(device).train()
        opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, weight_decay=1e-4)
        for x, y in run:
            step(nn.functional.cross_entropy(model(x), y), opt)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def fused(spec, data, device) -> float:
    start = time.perf_counter()
    models = []
    for seed in range(len(data)):
        torch.manual_seed(seed)
        models.append(build_model(spec).to(device).train())
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta").train()

    def forward(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    opt = torch.optim.SGD(list(params.values()), 0.05, momentum=0.9, weight_decay=1e-4)
    n = len(data)
    for i in range(len(data[0])):
        x = torch.stack([run[i][0] for run in data])
        y = torch.stack([run[i][1] for run in data])
        out = torch.vmap(forward)(params, buffers, x)
        step(
            nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(n, -1).mean(1).sum(), opt
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="1,3,5,8", help="N values")
    p.add_argument("--steps", type=int, default=6, help="timed SGD steps per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", default="", help="comma-separated substrings of the case labels (default: all)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for label, dataset, model, scale, batch in CASES:
        if args.cases and not any(c in label for c in args.cases.split(",")):
            continue
        ds = load_dataset(dataset)
        split = train_val_split(ds, 0.1, 0)
        spec = default_spec(model, ds.in_channels, ds.num_classes, ds.input_size, scale)
        for n in (int(v) for v in args.runs.split(",")):
            data = batches(split, n, batch, args.steps + 1, device)
            sequential(spec, [r[:1] for r in data], device)  # warm-up (allocator, kernels)
            fused(spec, [r[:1] for r in data], device)
            timed = [r[1:] for r in data]
            seq = [sequential(spec, timed, device) for _ in range(args.repeats)]
            fus = [fused(spec, timed, device) for _ in range(args.repeats)]
            images = n * args.steps * batch
            row = {
                "case": label,
                "runs": n,
                "sequential_img_s": round(images / statistics.median(seq), 1),
                "fused_img_s": round(images / statistics.median(fus), 1),
            }
            row["fused_over_sequential"] = round(statistics.median(seq) / statistics.median(fus), 2)
            print(json.dumps(row), file=sys.stderr, flush=True)
            results.append(row)
    print(
        json.dumps(
            {
                "benchmark": "fused_throughput",
                "date": date.today().isoformat(),
                "device": torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()} CPU",
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "mechanism": "vmap(functional_call) over stack_module_state",
                "steps": args.steps,
                "repeats": args.repeats,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
