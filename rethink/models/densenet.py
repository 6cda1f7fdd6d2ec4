"""CIFAR DenseNets: DenseNet-40 of Network Slimming (growth 12, compression 1, no bottleneck) and
DenseNet-BC-100 of the weight-level experiments (bottleneck layers, compression 0.5).

Widths: for each layer of the three dense blocks and the two transitions, the channels selected after
its pre-activation BN (a bottleneck layer adds the width of its 1×1 conv); then the channels selected
before the classifier: the paper's `cfg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .registry import Unit, register_model
from .selection import ChannelSelection, PreActHead
from .vgg import init_weights

GROWTH = 12
BOTTLENECK = 4  # a bottleneck layer's 1×1 conv makes 4 × growth channels


@dataclass(frozen=True)
class Layout:
    depth: int
    bottleneck: bool = False
    compression: float = 1.0  # a transition keeps floor(channels × compression)

    @property
    def per_block(self) -> int:
        return (self.depth - 4) // (6 if self.bottleneck else 3)


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, widths: Sequence[int], out_channels: int, kernel: int, pool: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.select = ChannelSelection(in_channels, widths[0])
        self.relu = nn.ReLU(inplace=True)
        if len(widths) == 2:  # bottleneck: BN-ReLU-1×1 conv, then BN-ReLU-3×3 conv
            self.conv1 = nn.Conv2d(widths[0], widths[1], 1, bias=False)
            self.bn2 = nn.BatchNorm2d(widths[1])
            self.conv2 = nn.Conv2d(widths[1], out_channels, kernel, padding=kernel // 2, bias=False)
        else:
            self.conv1 = nn.Conv2d(widths[0], out_channels, kernel, padding=kernel // 2, bias=False)
            self.bn2 = self.conv2 = None
        self.pool = pool  # transition: 1×1 conv then 2×2 average pool; dense layer: 3×3 conv, concatenated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.select(self.bn1(x))))
        if self.conv2 is not None:
            out = self.conv2(self.relu(self.bn2(out)))
        return nn.functional.avg_pool2d(out, 2, ceil_mode=True) if self.pool else torch.cat((x, out), 1)


def _plan(layout: Layout) -> list[tuple[int, int, bool]]:
    """(input channels, output channels, is transition) of every layer, in order."""
    plan, c = [], 2 * GROWTH
    for stage in range(3):
        for _ in range(layout.per_block):
            plan.append((c, GROWTH, False))
            c += GROWTH
        if stage < 2:
            out = int(c * layout.compression)
            plan.append((c, out, True))
            c = out
    return plan


class DenseNet(nn.Module):
    def __init__(self, layout: Layout, in_channels: int, num_classes: int, widths: Sequence[int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 2 * GROWTH, 3, padding=1, bias=False)
        layers, i = [], 0
        for c, out, transition in _plan(layout):
            n = 2 if layout.bottleneck and not transition else 1
            layers.append(DenseLayer(c, widths[i : i + n], out, 1 if transition else 3, pool=transition))
            i += n
        self.layers = nn.Sequential(*layers)
        self.head = PreActHead(_plan(layout)[-1][0] + GROWTH, widths[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.conv1(x)))


def densenet_widths(layout: Layout) -> tuple[int, ...]:
    widths: list[int] = []
    for c, _, transition in _plan(layout):
        widths += [c, BOTTLENECK * GROWTH] if layout.bottleneck and not transition else [c]
    return tuple(widths + [_plan(layout)[-1][0] + GROWTH])


def densenet_units(model: DenseNet) -> list[Unit]:
    units, i = [], 0
    for k, layer in enumerate(model.layers):
        units.append(Unit(f"layers.{k}.bn1", (f"layers.{k}.conv1",), i, select=f"layers.{k}.select"))
        i += 1
        if layer.conv2 is not None:
            units.append(Unit(f"layers.{k}.bn2", (f"layers.{k}.conv2",), i, conv=f"layers.{k}.conv1"))
            i += 1
    return units + [Unit("head.bn", ("head.fc",), i, select="head.select")]


def _register(name: str, layout: Layout) -> None:
    @register_model(name, "densenet", densenet_widths(layout), densenet_units)
    def build(in_channels: int, num_classes: int, widths: Sequence[int]) -> nn.Module:
        return DenseNet(layout, in_channels, num_classes, widths)


_register("densenet16", Layout(16))
_register("densenet40", Layout(40))
_register("densenet-bc100", Layout(100, bottleneck=True, compression=0.5))
