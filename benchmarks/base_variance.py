"""How much of a fine-tune pick's variance comes from the base (issue 34, point 2). Trains `--bases` bases on
a spec's search split (its own seed first, then the confirmation bases' seed stream), prunes each with the
spec's method, and fine-tunes each recipe from each base on `--seeds` seeds; scores every run on the
validation split and on the test set (the same model, the search split's normalisation). Per recipe, a
one-way random-effects ANOVA splits the validation variance into between-base and within-base (fine-tune
seed) components. Prints one JSON object (and writes benchmarks/results/base_variance.json with --write).

    python benchmarks/base_variance.py [--spec quick] [--bases 4] [--seeds 3] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rethink.arms import build_arm, confirm_base_seeds, default_recipe, derive_seed
from rethink.models import build_model
from rethink.prune import prune
from rethink.train import Runtime, evaluate, make_loaders, seed_everything, train
from study.plan.load import load_spec
from study.plan.space import apply
from study.search.trunk import base_arch, base_callbacks, load_data, prune_config

RESULTS = Path(__file__).resolve().parent / "results" / "base_variance.json"


def recipes(base) -> dict[str, dict]:
    """The recipes compared: the paper's fine-tune (lr/100 constant, 40/160 of E), a short one at a mid lr
    (constant lr/3.4 for E/2 epochs: the quick job's fine-tune pick on 2026-12-05), and rewind (the base's
    schedule from its lr over E epochs)."""
    e = base.epochs
    return {
        "paper": {"lr": base.lr / 100, "schedule": "constant", "augment": base.augment, "epochs": max(1, e // 4)},
        "short": {"lr": base.lr / 3.4, "schedule": "constant", "augment": base.augment, "epochs": max(1, e // 2)},
        "rewind": {"lr": base.lr, "schedule": base.schedule, "augment": base.augment, "epochs": e},
    }


def anova(table: np.ndarray) -> dict:
    """One-way random effects (rows: bases, columns: seeds): variance components and the base's share."""
    k, m = table.shape
    grand = table.mean()
    msb = m * ((table.mean(axis=1) - grand) ** 2).sum() / (k - 1)
    msw = ((table - table.mean(axis=1, keepdims=True)) ** 2).sum() / (k * (m - 1))
    between = max(0.0, (msb - msw) / m)
    return {
        "mean": float(grand),
        "sd_between_bases": float(np.sqrt(between)),
        "sd_within_base": float(np.sqrt(msw)),
        "base_share_of_variance": float(between / (between + msw)) if between + msw > 0 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="quick")
    parser.add_argument("--set", action="append", default=[], help="spec overrides, as `rethink study --set`")
    parser.add_argument("--bases", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    spec = load_spec(args.spec, args.set)
    ds, split = load_data(spec)
    test = replace(split, x_eval=ds.x_test, y_eval=ds.y_test, eval_name="test")
    arch, base_config = base_arch(spec, ds), spec.base.train_config(spec.seed)
    _, test_loader = make_loaders(test, base_config, torch.device("cpu"))
    seeds = [spec.seed, *confirm_base_seeds(spec.seed, args.bases - 1)]
    val = {name: np.zeros((args.bases, args.seeds)) for name in recipes(base_config)}
    tst = {name: np.zeros((args.bases, args.seeds)) for name in recipes(base_config)}
    for i, seed in enumerate(seeds):
        seed_everything(seed)
        base = build_model(arch)
        train(base, split, replace(base_config, seed=seed), base_callbacks(spec), Runtime())
        base.cpu().eval()
        pruned = prune(base, arch, prune_config(spec))
        for name, params in recipes(base_config).items():
            for j in range(args.seeds):
                s = derive_seed(seed, f"benchmark-finetune-{j}")
                arm = build_arm("finetune", pruned, arch, base_config, 1.0, seed=s)
                config = apply(params, replace(default_recipe("finetune", base_config, 1, 1), seed=s))
                val[name][i, j] = train(arm.model, split, config, list(arm.callbacks), Runtime()).final.eval_acc
                tst[name][i, j] = evaluate(arm.model, test_loader)[1]
    out = {
        "benchmark": "base_variance",
        "spec": spec.name,
        "overrides": args.set,
        "bases": args.bases,
        "seeds_per_base": args.seeds,
        "n_val": len(split.y_eval),
        "n_test": len(ds.y_test),
        "recipes": {
            name: {
                **recipes(base_config)[name],
                "validation": anova(val[name]),
                "test_mean": float(tst[name].mean()),
                "val_to_test_gap": float(tst[name].mean() - val[name].mean()),
                "val_per_base": [round(float(v), 4) for v in val[name].mean(axis=1)],
                "test_per_base": [round(float(v), 4) for v in tst[name].mean(axis=1)],
            }
            for name in val
        },
        "wall_seconds": round(time.perf_counter() - start, 1),
        "device": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "date": datetime.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
