"""CIFAR VGG with batch norm, built from a list of conv widths (the paper's `cfg` without the 'M's)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import Unit, register_model

# Stage sizes (convs between max-pools) for each depth; the paper's cfg splits at these points.
STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
STAGE_WIDTHS = (64, 128, 256, 512, 512)
CLASSIFIER_HIDDEN = 512  # Li et al.'s CIFAR VGG: Linear(c, 512) - BN - ReLU - Linear(512, classes)
# "bn-mlp": Li et al.'s head (l1-norm-pruning/models/vgg.py); "linear": Linear(c, classes), the head of the
# official Network Slimming and weight-level VGGs (network-slimming/models/vgg.py, weight-level/.../vgg.py).
CLASSIFIERS = ("bn-mlp", "linear")
# "weight-level": the convs of the weight-level code's VGG (weight-level/models/cifar/vgg.py): a bias on every
# conv (zero at init) and He init over the fan-in, k*k*in_channels; the default is fan-out without a bias.
CONV_INITS = ("weight-level",)


def vgg_widths(depth: int) -> tuple[int, ...]:
    return tuple(w for n, w in zip(STAGES[depth], STAGE_WIDTHS, strict=True) for _ in range(n))


class VGG(nn.Module):
    """`features` holds conv-BN-ReLU units, a max-pool after each stage but the last."""

    def __init__(
        self,
        depth: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        classifier: str = "bn-mlp",
        conv_init: str = "default",
    ):
        super().__init__()
        self.depth = depth
        layers: list[nn.Module] = []
        c, i = in_channels, 0
        for s, n in enumerate(STAGES[depth]):
            for _ in range(n):
                layers += [
                    nn.Conv2d(c, widths[i], 3, padding=1, bias=conv_init == "weight-level"),
                    nn.BatchNorm2d(widths[i]),
                    nn.ReLU(inplace=True),
                ]
                c, i = widths[i], i + 1
            if s < len(STAGES[depth]) - 1:
                # ceil_mode keeps a 1×1 map at 1×1, so 8×8 inputs work; identical to the paper's on 32×32.
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # = the paper's AvgPool2d(2) on the final 2×2 map
        if classifier == "linear":
            self.classifier = nn.Sequential(nn.Linear(c, num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(c, CLASSIFIER_HIDDEN),
                nn.BatchNorm1d(CLASSIFIER_HIDDEN),
                nn.ReLU(inplace=True),
                nn.Linear(CLASSIFIER_HIDDEN, num_classes),
            )
        init_weights(self, "fan_in" if conv_init == "weight-level" else "fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def init_weights(model: nn.Module, conv_mode: str = "fan_out") -> None:
    if next(model.parameters()).is_meta:  # a storage-less model (shapes and counts only): nothing to draw
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def vgg_units(model: VGG) -> list[Unit]:
    """Every conv is a unit (with the BN after it, if any); its consumer is the next conv, or the first
    classifier layer for the last."""
    convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    consumers = [f"features.{j}" for j in convs[1:]] + ["classifier.0"]
    bns = [f"features.{i + 1}" if isinstance(model.features[i + 1], nn.BatchNorm2d) else None for i in convs]
    return [
        Unit(bn, (c,), k, conv=f"features.{i}") for k, (i, c, bn) in enumerate(zip(convs, consumers, bns, strict=True))
    ]


def _register(depth: int) -> None:
    @register_model(f"vgg{depth}", "vgg", vgg_widths(depth), vgg_units, CLASSIFIERS, CONV_INITS)
    def build(
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        classifier: str = "bn-mlp",
        conv_init: str = "default",
    ) -> nn.Module:
        return VGG(depth, in_channels, num_classes, widths, classifier, conv_init)


for _depth in STAGES:
    _register(_depth)
