"""CIFAR DenseNet (DenseNet-40 of Network Slimming: growth 12, compression 1, no bottleneck).

Widths: for each layer of the three dense blocks and the two transitions, the channels selected after
its pre-activation BN; then the channels selected before the classifier: the paper's `cfg`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import Unit, register_model
from .selection import ChannelSelection, PreActHead
from .vgg import init_weights

GROWTH = 12


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, selected: int, out_channels: int, kernel: int, pool: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.select = ChannelSelection(in_channels, selected)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(selected, out_channels, kernel, padding=kernel // 2, bias=False)
        self.pool = pool  # transition: 1×1 conv then 2×2 average pool; dense layer: 3×3 conv, concatenated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.select(self.bn1(x))))
        return nn.functional.avg_pool2d(out, 2, ceil_mode=True) if self.pool else torch.cat((x, out), 1)


class DenseNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int, widths: Sequence[int]):
        super().__init__()
        n = (depth - 4) // 3
        c = 2 * GROWTH
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        layers, i = [], 0
        for stage in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, widths[i], GROWTH, 3, pool=False))
                c, i = c + GROWTH, i + 1
            if stage < 2:
                layers.append(DenseLayer(c, widths[i], c, 1, pool=True))
                i += 1
        self.layers = nn.Sequential(*layers)
        self.head = PreActHead(c, widths[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.conv1(x)))


def densenet_widths(depth: int) -> tuple[int, ...]:
    n = (depth - 4) // 3
    widths, c = [], 2 * GROWTH
    for stage in range(3):
        for _ in range(n):
            widths.append(c)
            c += GROWTH
        if stage < 2:
            widths.append(c)
    return tuple(widths + [c])


def densenet_units(model: DenseNet) -> list[Unit]:
    units = [
        Unit(f"layers.{k}.bn1", (f"layers.{k}.conv1",), k, select=f"layers.{k}.select")
        for k in range(len(model.layers))
    ]
    return units + [Unit("head.bn", ("head.fc",), len(model.layers), select="head.select")]


def _register(depth: int) -> None:
    @register_model(f"densenet{depth}", "densenet", densenet_widths(depth), densenet_units)
    def build(in_channels: int, num_classes: int, widths: Sequence[int]) -> nn.Module:
        return DenseNet(depth, in_channels, num_classes, widths)


for _depth in (16, 40):
    _register(_depth)
