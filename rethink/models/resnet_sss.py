"""The pre-activation ImageNet ResNet-50 of Sparse Structure Selection (Huang & Wang 2018; github.com/TuSimple/
sparse-structure-selection symbol/resnet.py, MXNet) and the ResNet-26/32/41 that SSS prunes it to, which Liu et
al. 2019 train from scratch (rethinking-network-pruning imagenet/sparse-structure-selection/README.md).

A block is BN-ReLU-conv1×1, BN-ReLU-conv3×3 (stride), BN-ReLU-conv1×1 (×4 out); the first block of a stage adds a
1×1 projection (stride) of the first BN-ReLU's output, others the identity; the stem is conv7×7/2-BN-ReLU-maxpool,
and a last BN-ReLU precedes the global pool and fc. SSS removes whole residual functions: the official README's
layouts give per stage (a, b): `a` residual blocks remain, and `b` says whether the first block (the one with
the projection) keeps its residual function; where it does not, the stage starts with the projection alone
(BN-ReLU-conv1×1). Widths are each kept residual function's two inner widths, as the other ImageNet ResNets'."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .imagenet import RESNET_PLANES
from .registry import Unit, register_model

EXPANSION = 4
# imagenet/sparse-structure-selection/README.md, step 2: `config.units` per stage (blocks remaining, first kept)
SSS_LAYOUTS = {
    "resnet50_preact": ((3, True), (4, True), (6, True), (3, True)),  # the unpruned ResNet-50 (config.units 3,4,6,3)
    "resnet41_sss": ((0, False), (4, True), (6, True), (3, True)),
    "resnet32_sss": ((1, False), (4, True), (4, True), (1, True)),
    "resnet26_sss": ((0, False), (2, False), (5, False), (1, True)),
}


class PreActBottleneck(nn.Module):
    """A pre-activation bottleneck; `widths` None: the projection alone (the residual function pruned)."""

    def __init__(self, cin: int, widths: Sequence[int] | None, planes: int, stride: int):
        super().__init__()
        out = planes * EXPANSION
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        needs = stride != 1 or cin != out
        self.downsample = nn.Conv2d(cin, out, 1, stride, bias=False) if needs else None
        self.residual = widths is not None
        if widths is None:
            return
        w1, w2 = widths
        self.conv1 = nn.Conv2d(cin, w1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(act)
        if not self.residual:
            return shortcut
        out = self.conv2(self.relu(self.bn2(self.conv1(act))))
        return self.conv3(self.relu(self.bn3(out))) + shortcut


def stage_blocks(layout: Sequence[tuple[int, bool]]) -> list[list[bool]]:
    """Per stage, whether each of its blocks keeps its residual function (the first block always exists)."""
    return [[first] + [True] * (n - first) for n, first in layout]


class PreActImageNetResNet(nn.Module):
    def __init__(self, layout: Sequence[tuple[int, bool]], in_channels: int, num_classes: int, widths: Sequence[int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, c, i = [], 64, 0
        for s, (kept, planes) in enumerate(zip(stage_blocks(layout), RESNET_PLANES, strict=True)):
            for b, residual in enumerate(kept):
                inner = widths[i : i + 2] if residual else None
                blocks.append(PreActBottleneck(c, inner, planes, 2 if s > 0 and b == 0 else 1))
                c, i = planes * EXPANSION, i + 2 * residual
        self.blocks = nn.Sequential(*blocks)
        self.bn_final = nn.BatchNorm2d(c)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        if next(self.parameters()).is_meta:
            return
        for m in self.modules():  # train.py: mx.init.Xavier(gaussian, factor_type "in", magnitude 2) = He over fan-in
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(self.relu(self.bn_final(x))), 1))


def sss_widths(layout: Sequence[tuple[int, bool]]) -> tuple[int, ...]:
    kept = stage_blocks(layout)
    return tuple(p for blocks, p in zip(kept, RESNET_PLANES, strict=True) for r in blocks if r for _ in range(2))


def preact_units(model: PreActImageNetResNet) -> list[Unit]:
    """Each kept residual function's conv1 and conv2 outputs, normalized by the next BN, read by the next conv."""
    units, w = [], 0
    for k, block in enumerate(model.blocks):
        if block.residual:
            b = f"blocks.{k}"
            units += [
                Unit(f"{b}.bn2", (f"{b}.conv2",), w, conv=f"{b}.conv1"),
                Unit(f"{b}.bn3", (f"{b}.conv3",), w + 1, conv=f"{b}.conv2"),
            ]
            w += 2
    return units


def _register(name: str, layout: tuple[tuple[int, bool], ...]) -> None:
    @register_model(name, "resnet", sss_widths(layout), preact_units, input_size=224)
    def build(in_channels: int, num_classes: int, widths: Sequence[int], input_size: int = 224) -> nn.Module:
        return PreActImageNetResNet(layout, in_channels, num_classes, widths)


for _name, _layout in SSS_LAYOUTS.items():
    _register(_name, _layout)
