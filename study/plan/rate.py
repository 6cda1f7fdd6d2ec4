"""This machine's training rate per model, for the "here" estimate of `rethink specs` and `--dry-run`: timed
once per model, thread count, torch version and CPU, and kept on disk (`kept.py`: machine_rates.json), so a
second look at a spec is quick; and one GPU's rate, quoted with its source."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from rethink.data import DatasetShape
from rethink.flops import forward_flops, training_flops
from rethink.models.registry import build_model

from .arch import base_arch
from .kept import keep, kept_file, read_kept
from .spec import Spec

# One GPU's training rate, quoted: a standard ResNet-18 CIFAR-10 training, 32.3 PFLOPs in 7 min on one 400 W
# A100 (2 FLOPs per MAC: 16.15e15 MACs in 420 s). Small CIFAR networks keep a GPU less busy than a ResNet-18,
# so their time is longer: read a GPU estimate from this rate as a lower bound.
GPU_RATE = 16.15e15 / 420
GPU_SOURCE = (
    "one A100 at a standard ResNet-18 CIFAR-10 training's rate (32.3 PFLOPs in 7 min: github.com/KellerJordan/"
    "cifar10-airbench@f1c599c4af24 README.md line 16); small networks run slower, so a lower bound"
)
_RATES: dict[str, float] = {}  # by `_key`
RATE_SIDE = 112  # the largest image side the rate is timed at
RATE_STEP_MACS = 4e10  # the most training MACs one timed step spends (32 CIFAR images of VGG-19; 1 of VGG-16 at 224)
# Smaller steps would time a catalogue in less than half the time but time the rate low (VGG-16 at 64 px, two
# images a step: 0.27-0.43 of this rate): benchmarks/machine_rate.py, benchmarks/results/machine_rate.json


def machine_rate(spec: Spec, data: DatasetShape, steps: int = 2) -> float:
    """This machine's training MACs per second for the spec's unpruned model (CPU, fp32): the median of
    `steps` timed steps of a batch of up to 32 synthetic images after one untimed step; timed once per model
    and kept in memory and on disk (`rates_file`)."""
    arch = base_arch(spec, data)
    key = _key(arch, spec, data, steps)
    if key not in _RATES:
        stored = read_kept(rates_file()).get(key, {}).get("rate")
        if isinstance(stored, (int, float)) and stored > 0:
            _RATES[key] = float(stored)
        else:
            with torch.random.fork_rng():  # the caller's random state is left alone
                torch.manual_seed(0)
                _RATES[key] = _timed_rate(build_model(arch), spec, data, steps)
            _store(rates_file(), key, arch.model, _RATES[key])
    return _RATES[key]


def rates_file() -> Path | None:
    """Where timed rates are kept; None when RETHINK_CACHE_DIR is set empty."""
    return kept_file("machine_rates.json")


def _key(arch, spec: Spec, data: DatasetShape, steps: int) -> str:
    """What a timed rate depends on: the model, its timed batch and shape, the timing's settings, and the
    machine as torch sees it (version, threads, CPU). Not the class count: a classifier is a few thousand
    MACs of millions, so CIFAR-10 and CIFAR-100 specs of one model share a timing (33 timings → 24 for the
    catalogue)."""
    model = repr(replace(arch, num_classes=0))
    timing = [min(32, spec.base.batch_size), data.in_channels, data.input_size, steps, RATE_SIDE, RATE_STEP_MACS]
    parts = [model, *timing, torch.__version__, torch.get_num_threads(), _cpu(), os.cpu_count()]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _store(path: Path | None, key: str, model: str, rate: float) -> None:
    """Add one rate; a folder that cannot be written only costs the next look a timing."""
    entry = {"rate": rate, "model": model, "threads": torch.get_num_threads(), "torch": torch.__version__,
             "cpu": _cpu(), "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip
    keep(path, key, entry)


def _timed_rate(model: torch.nn.Module, spec: Spec, data: DatasetShape, steps: int) -> float:
    side = min(data.input_size, RATE_SIDE)  # ImageNet: timed at 112 px (their convs keep a CPU as busy)
    shape = (data.in_channels, side, side)
    try:
        per_image = training_flops(forward_flops(model, shape), 1)  # ImageNet models: a few images keep it quick
    except (RuntimeError, AssertionError, ValueError):  # a model made for one size only (a ViT): timed at it
        shape = (data.in_channels, data.input_size, data.input_size)
        per_image = training_flops(forward_flops(model, shape), 1)
    batch = max(2, min(32, spec.base.batch_size, int(RATE_STEP_MACS // per_image)))  # 2: BN1d needs a pair
    x = torch.rand(batch, *shape)
    y = torch.arange(batch) % data.num_classes
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    macs = training_flops(forward_flops(model, tuple(x.shape[1:])), batch)
    return macs / sorted(times)[len(times) // 2]
