"""FLOPs and parameter reductions of every pruning method × model at the paper's settings, next to the
figures the original papers report. Accounting, not timing: CIFAR input (3×32×32, 10 classes), MACs of
conv and linear layers, parameters with BN. Prints one JSON object; --markdown prints the README's table.

Reductions fixed by the architecture (l1-norm variants, sfp, thinet: per-layer counts) are exact on any
weights. Slimming's global threshold and magnitude's FLOPs depend on the trained weights: they are left
blank here and measured in each study's prune run.
"""

from __future__ import annotations

import argparse
import json
from datetime import date

import torch

from rethink.arms import pruned_flops
from rethink.flops import forward_flops, param_count
from rethink.models import build_model, default_spec
from rethink.prune import PruneConfig, prune

CONV_SHARE = "the ratio: share of conv weights"
# (method, model, setting, config, model options, paper FLOPs ↓ %, paper params ↓ %, source)
WEIGHT_LEVEL_VGG = {"classifier": "linear", "conv_init": "weight-level"}  # the weight-level code's VGG
ROWS = [
    ("l1-norm", "vgg16", "VGG-16-A", {"variant": "vgg16-a"}, {}, 34.2, 64.0, "Li et al. 2017, Table 1"),
    ("l1-norm", "resnet56", "ResNet-56-A", {"variant": "resnet56-a"}, {}, 10.4, 9.4, "Li et al. 2017, Table 1"),
    ("l1-norm", "resnet56", "ResNet-56-B", {"variant": "resnet56-b"}, {}, 27.6, 13.7, "Li et al. 2017, Table 1"),
    ("l1-norm", "resnet110", "ResNet-110-A", {"variant": "resnet110-a"}, {}, 15.9, 2.3, "Li et al. 2017, Table 1"),
    ("l1-norm", "resnet110", "ResNet-110-B", {"variant": "resnet110-b"}, {}, 38.6, 32.4, "Li et al. 2017, Table 1"),
    ("sfp", "resnet56", "40%", {"ratio": 0.4}, {}, 52.6, None, "He et al. 2018, Table 1"),
    ("sfp", "resnet110", "30%", {"ratio": 0.3}, {}, 40.8, None, "He et al. 2018, Table 1"),
    ("thinet", "vgg16", "50%", {"ratio": 0.5}, {}, None, None, "ThiNet reports ImageNet only"),
    ("thinet", "resnet56", "50%", {"ratio": 0.5}, {}, None, None, "ThiNet reports ImageNet only"),
    ("slimming", "vgg19", "70%", {"ratio": 0.7}, {"classifier": "linear", "bn_init": 0.5}, 51.0, 88.5,
     "Liu et al. 2017, Table 1"),
    ("slimming", "preresnet164", "40%", {"ratio": 0.4}, {}, 31.1, 14.9, "Liu et al. 2017, Table 1"),
    ("slimming", "densenet40", "40%", {"ratio": 0.4}, {}, 30.3, 65.2, "Liu et al. 2017, Table 1"),
    ("magnitude", "vgg19", "30%", {"ratio": 0.3}, WEIGHT_LEVEL_VGG, None, 30.0, CONV_SHARE),
    ("magnitude", "vgg19", "60%", {"ratio": 0.6}, WEIGHT_LEVEL_VGG, None, 60.0, CONV_SHARE),
    ("magnitude", "vgg19", "90%", {"ratio": 0.9}, WEIGHT_LEVEL_VGG, None, 90.0, CONV_SHARE),
]  # fmt: skip
WEIGHT_DEPENDENT_FLOPS = {"slimming", "magnitude"}
WEIGHT_DEPENDENT_PARAMS = {"slimming"}


def reductions(method: str, model_name: str, config: dict, options: dict) -> tuple[float | None, float | None]:
    """(FLOPs ↓ %, params ↓ %) of the pruned model against the unpruned one; None where weights decide."""
    spec = default_spec(model_name, **options)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    data = torch.randn(64, 3, 32, 32) if method == "thinet" else None
    pruned = prune(model, spec, PruneConfig(method, **config), data)
    shape = (3, 32, 32)
    flops = 100 * (1 - pruned_flops(pruned) / forward_flops(model, shape))
    params = 100 * (1 - param_count(pruned.model, nonzero=not pruned.structured) / param_count(model))
    return (
        None if method in WEIGHT_DEPENDENT_FLOPS else round(flops, 1),
        None if method in WEIGHT_DEPENDENT_PARAMS else round(params, 1),
    )


def table(rows: list[dict]) -> str:
    def cell(v):
        return "—" if v is None else f"{v:.1f}"

    lines = [
        "| method | model | setting | FLOPs ↓ % (rethink) | params ↓ % (rethink) | FLOPs ↓ % (paper) "
        "| params ↓ % (paper) | paper figures from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['model']} | {r['setting']} | {cell(r['flops'])} | {cell(r['params'])} "
            f"| {cell(r['paper_flops'])} | {cell(r['paper_params'])} | {r['source']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--markdown", action="store_true", help="print the README's table instead of JSON")
    args = p.parse_args()
    rows = []
    for method, model_name, setting, config, options, paper_flops, paper_params, source in ROWS:
        flops, params = reductions(method, model_name, config, options)
        rows.append(
            {
                "method": method,
                "model": model_name,
                "setting": setting,
                "options": options,
                "flops": flops,
                "params": params,
                "paper_flops": paper_flops,
                "paper_params": paper_params,
                "source": source,
            }
        )
    if args.markdown:
        print(table(rows))
    else:
        print(json.dumps({"benchmark": "method_table", "date": date.today().isoformat(), "torch": torch.__version__,
                          "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
