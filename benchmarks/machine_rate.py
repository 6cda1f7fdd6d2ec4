"""The catalogue's "here" estimate times training steps of each model (study.plan.rate.machine_rate, up to
RATE_SIDE px and RATE_STEP_MACS training MACs a step). This times it at those settings and at smaller,
quicker ones (64 px, 1e10 MACs a step), on the models of a few shipped specs, same run: the rate each gives
(MACs/s; the median of --repeats timings of a fresh model) and the seconds each timing takes. Smaller steps
keep a CPU less busy, so they time the rate low: a quicker catalogue, but a worse estimate. Prints one JSON
object."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date

import torch

import study.plan.rate as rates
from rethink.data import dataset_shape
from rethink.models.registry import build_model
from study.plan.arch import base_arch
from study.plan.load import load_spec

SPECS = [
    "cifar10-slimming-vgg19-70",
    "cifar10-l1-resnet56-a",
    "cifar10-slimming-preresnet164-40",
    "cifar100-magnitude-densenet-bc100",
    "cifar100-depgraph-resnet18",
    "imagenet-l1-resnet34-a",
    "imagenet-magnitude-resnet50",
    "imagenet-magnitude-vgg16",
    "imagenet-depgraph-deit-tiny",
]
SMALLER = (64, 1e10)  # (largest side, training MACs a step) of the quicker timing


def timed(spec, data, side: int, step_macs: float) -> tuple[float, float]:
    """(rate, seconds) of one machine_rate timing at these settings, on a freshly built model."""
    torch.manual_seed(0)
    model = build_model(base_arch(spec, data))
    kept = rates.RATE_SIDE, rates.RATE_STEP_MACS
    rates.RATE_SIDE, rates.RATE_STEP_MACS = side, step_macs
    try:
        start = time.perf_counter()
        rate = rates._timed_rate(model, spec, data, steps=2)
        return rate, time.perf_counter() - start
    finally:
        rates.RATE_SIDE, rates.RATE_STEP_MACS = kept  # the catalogue's own settings, whatever was timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("specs", nargs="*", default=SPECS)
    args = p.parse_args()
    now = (rates.RATE_SIDE, rates.RATE_STEP_MACS)
    rows = {}
    for name in args.specs:
        spec = load_spec(name)
        data = dataset_shape(spec.dataset, spec.data_root)
        settings = (("now", now), ("smaller", SMALLER))
        runs = {k: [timed(spec, data, *s) for _ in range(args.repeats)] for k, s in settings}
        med = {k: (statistics.median(r for r, _ in v), statistics.median(t for _, t in v)) for k, v in runs.items()}
        rows[name] = {
            "model": spec.model,
            "rate_now": f"{med['now'][0]:.3g}",
            "rate_smaller": f"{med['smaller'][0]:.3g}",
            "rate_smaller_over_now": round(med["smaller"][0] / med["now"][0], 2),
            "seconds_now": round(med["now"][1], 2),
            "seconds_smaller": round(med["smaller"][1], 2),
        }
    ratios = [r["rate_smaller_over_now"] for r in rows.values()]
    print(
        json.dumps(
            {
                "benchmark": "machine_rate",
                "date": date.today().isoformat(),
                "device": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
                "versions": {"torch": torch.__version__, "python": platform.python_version()},
                "settings_now": {"side": now[0], "step_macs": now[1]},
                "settings_smaller": {"side": SMALLER[0], "step_macs": SMALLER[1]},
                "repeats": args.repeats,
                "models": rows,
                "rate_ratio_min": min(ratios),
                "rate_ratio_max": max(ratios),
                "seconds_now_total": round(sum(r["seconds_now"] for r in rows.values()), 1),
                "seconds_smaller_total": round(sum(r["seconds_smaller"] for r in rows.values()), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
