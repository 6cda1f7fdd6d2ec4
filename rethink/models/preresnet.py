"""CIFAR pre-activation ResNet with bottlenecks (PreResNet-164 of Network Slimming), 9n+2 layers.

Widths per block: [channels selected after bn1, conv1 out, conv2 out], then the channels selected
before the classifier: the paper's `cfg`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import Unit, register_model
from .selection import ChannelSelection, PreActHead
from .vgg import init_weights

EXPANSION = 4
STAGE_PLANES = (16, 32, 64)


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, planes: int, cfg: Sequence[int], stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.select = ChannelSelection(in_channels, cfg[0])
        self.conv1 = nn.Conv2d(cfg[0], cfg[1], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cfg[1])
        self.conv2 = nn.Conv2d(cfg[1], cfg[2], 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cfg[2])
        self.conv3 = nn.Conv2d(cfg[2], planes * EXPANSION, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        needs = stride != 1 or in_channels != planes * EXPANSION
        self.downsample = nn.Conv2d(in_channels, planes * EXPANSION, 1, stride, bias=False) if needs else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.select(self.bn1(x))))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class PreResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int, widths: Sequence[int]):
        super().__init__()
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        blocks, c = [], 16
        for s, planes in enumerate(STAGE_PLANES):
            for b in range(n):
                k = s * n + b
                blocks.append(Bottleneck(c, planes, widths[3 * k : 3 * k + 3], 2 if s > 0 and b == 0 else 1))
                c = planes * EXPANSION
        self.blocks = nn.Sequential(*blocks)
        self.head = PreActHead(c, widths[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.conv1(x)))


def preresnet_widths(depth: int) -> tuple[int, ...]:
    n = (depth - 2) // 9
    widths: list[int] = []
    c = 16
    for planes in STAGE_PLANES:
        for _ in range(n):
            widths += [c, planes, planes]
            c = planes * EXPANSION
    return tuple(widths + [c])


def preresnet_units(model: PreResNet) -> list[Unit]:
    units = []
    for k in range(len(model.blocks)):
        b = f"blocks.{k}"
        units += [
            Unit(f"{b}.bn1", (f"{b}.conv1",), 3 * k, select=f"{b}.select"),
            Unit(f"{b}.bn2", (f"{b}.conv2",), 3 * k + 1, conv=f"{b}.conv1"),
            Unit(f"{b}.bn3", (f"{b}.conv3",), 3 * k + 2, conv=f"{b}.conv2"),
        ]
    return units + [Unit("head.bn", ("head.fc",), 3 * len(model.blocks), select="head.select")]


def _register(depth: int) -> None:
    @register_model(f"preresnet{depth}", "preresnet", preresnet_widths(depth), preresnet_units)
    def build(in_channels: int, num_classes: int, widths: Sequence[int]) -> nn.Module:
        return PreResNet(depth, in_channels, num_classes, widths)


for _depth in (20, 110, 164):
    _register(_depth)
