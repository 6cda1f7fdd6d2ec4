"""CIFAR ResNet (He et al. 2016, 6n+2 layers) with per-block inner widths and the option-A shortcut."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import Unit, register_model
from .vgg import init_weights

STAGE_WIDTHS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by `stride` and zero-pad the new channels; no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """conv1 (width `inner`, the one the L1-norm variants prune) → conv2 (the stage width) + shortcut."""

    def __init__(self, in_channels: int, inner: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        needs = stride != 1 or in_channels != out_channels
        self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride) if needs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int, widths: Sequence[int]):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        blocks, c = [], STAGE_WIDTHS[0]
        for s, out in enumerate(STAGE_WIDTHS):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(BasicBlock(c, widths[s * n + b], out, stride))
                c = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet_widths(depth: int) -> tuple[int, ...]:
    n = (depth - 2) // 6
    return tuple(w for w in STAGE_WIDTHS for _ in range(n))


def resnet_units(model: ResNet) -> list[Unit]:
    """The first conv of each block (Li et al.: block outputs and shortcuts keep their width)."""
    return [
        Unit(f"blocks.{k}.bn1", (f"blocks.{k}.conv2",), k, conv=f"blocks.{k}.conv1") for k in range(len(model.blocks))
    ]


def _register(depth: int) -> None:
    @register_model(f"resnet{depth}", "resnet", resnet_widths(depth), resnet_units)
    def build(in_channels: int, num_classes: int, widths: Sequence[int]) -> nn.Module:
        return ResNet(depth, in_channels, num_classes, widths)


for _depth in (20, 32, 56, 110):
    _register(_depth)
