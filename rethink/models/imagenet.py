"""ImageNet models of the paper's ImageNet half, width-configurable: ResNet-34/50 and VGG-11/16 with BN, laid
out as torchvision builds them (the official code's `resnet34`, `resnet50`, `vgg11_bn`, `vgg16_bn`), so that at
full width their parameter counts equal torchvision's. Widths are the inner channels of each residual block
(what the L1-norm and ThiNet ImageNet code prune; block outputs keep their width) and every VGG conv.

`vgg16_nobn` is torchvision's `vgg16`, VGG-16 without BN: the predefined architectures the official code
trains from scratch for ThiNet (imagenet/thinet/models/thinetconv.py, thinetvgg.py) and regression-based
pruning (imagenet/regression-pruning/models/vgg_5x.py) are its widths with the 4096-4096 head (VGG-Conv,
VGG-16-5x) or the "gap" head (VGG-GAP, VGG-Tiny). Its units have no BN: filter-ranking methods (L1-norm,
ThiNet) and weight-level ones prune it, slimming (which ranks BN scales) refuses it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import Unit, register_model
from .selection import ChannelSelection
from .vgg import STAGES, vgg_units, vgg_widths  # vgg_units: the last conv read by classifier.0 (7×7 each)

RESNET_STAGES = {34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
RESNET_PLANES = (64, 128, 256, 512)
VGG_POOL = 7  # torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier, at 224×224
VGG_HIDDEN = 4096
# "torchvision": Linear-ReLU-Dropout twice, then Linear (torchvision's vgg*_bn; weight-level code).
# "slimming": BN1d after each hidden Linear, no dropout (imagenet/network-slimming/vgg.py).
VGG_CLASSIFIERS = ("torchvision", "slimming")
# vgg16_nobn's heads: torchvision's, or "gap", ThiNet's VGG-GAP/-Tiny head (imagenet/thinet/models/thinetvgg.py):
# no max-pool after the last stage, the 14×14 map averaged (AvgPool2d(14, 2) at 224; a global average here, the
# same at 224 and defined at any size), one Linear(last width, classes).
NOBN_CLASSIFIERS = ("torchvision", "gap")


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, widths: Sequence[int], planes: int, stride: int):
        super().__init__()
        (inner,) = widths
        self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, widths: Sequence[int], planes: int, stride: int, select: Sequence[int] | None = None):
        super().__init__()
        w1, w2 = widths
        out = planes * self.expansion
        self.select = None  # ResNet-50-2x: conv1 reads a fixed subset of the block's input channels
        if select is not None:
            self.select = ChannelSelection(cin, len(select))
            self.select.index.copy_(torch.as_tensor(select))
        self.conv1 = nn.Conv2d(cin if select is None else len(select), w1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride, 1, bias=False)  # stride on the 3×3, as torchvision (v1.5)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x if self.select is None else self.select(x))))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ImageNetResNet(nn.Module):
    """torchvision's ResNet: 7×7/2 stem, max-pool, four stages, global pool, fc (torchvision's init).
    `selections`: per bottleneck, the input channels its conv1 reads (ResNet-50-2x; None: all)."""

    def __init__(
        self,
        depth: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        selections: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__()
        block = Bottleneck if depth == 50 else Basic
        per = 2 if block is Bottleneck else 1
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, c, i = [], 64, 0
        for s, (n, planes) in enumerate(zip(RESNET_STAGES[depth], RESNET_PLANES, strict=True)):
            for b in range(n):
                extra = {"select": selections[len(blocks)]} if selections is not None else {}
                blocks.append(block(c, widths[i : i + per], planes, 2 if s > 0 and b == 0 else 1, **extra))
                c, i = planes * block.expansion, i + per
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        if next(self.parameters()).is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.blocks(x)), 1))


def resnet_widths(depth: int) -> tuple[int, ...]:
    per = 2 if depth == 50 else 1
    return tuple(p for n, p in zip(RESNET_STAGES[depth], RESNET_PLANES, strict=True) for _ in range(n * per))


def resnet_units(model: ImageNetResNet) -> list[Unit]:
    """Each block's inner convs (conv1; and conv2 in a bottleneck), read by the next conv of the block."""
    units = []
    for k, block in enumerate(model.blocks):
        b = f"blocks.{k}"
        if isinstance(block, Bottleneck):
            units += [
                Unit(f"{b}.bn1", (f"{b}.conv2",), 2 * k, conv=f"{b}.conv1"),
                Unit(f"{b}.bn2", (f"{b}.conv3",), 2 * k + 1, conv=f"{b}.conv2"),
            ]
        else:
            units.append(Unit(f"{b}.bn1", (f"{b}.conv2",), k, conv=f"{b}.conv1"))
    return units


def pooled_side(input_size: int) -> int:
    """The side of the map the VGG classifier reads: 7 at 224 (torchvision's), the last feature map's side
    for an architecture declared at another size (1 at 32), so a small-image VGG has no 49-fold head. It
    follows the declared size, not the images fed: a proxy at 128 px runs the 224 model, pooling to 7×7."""
    return max(1, min(VGG_POOL, input_size // 32))


class ImageNetVGG(nn.Module):
    """torchvision's VGG: conv(bias)-BN-ReLU units (conv-ReLU without BN), a max-pool after every stage (ceil
    mode: the same on 224×224, and small inputs still reach 1×1), a 7×7 adaptive pool (at 224) and a 4096-4096
    classifier; or the "gap" head (see NOBN_CLASSIFIERS)."""

    def __init__(
        self,
        depth: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        classifier: str,
        input_size: int,
        batch_norm: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c, i = in_channels, 0
        for s, n in enumerate(STAGES[depth]):
            for _ in range(n):
                norm = [nn.BatchNorm2d(widths[i])] if batch_norm else []
                layers += [nn.Conv2d(c, widths[i], 3, padding=1), *norm, nn.ReLU(inplace=True)]
                c, i = widths[i], i + 1
            if classifier != "gap" or s < len(STAGES[depth]) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        pool = 1 if classifier == "gap" else pooled_side(input_size)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        flat = c * pool * pool
        self.classifier = _vgg_head(classifier, flat, num_classes)
        if next(self.parameters()).is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg_head(classifier: str, flat: int, num_classes: int) -> nn.Sequential:
    if classifier == "gap":
        return nn.Sequential(nn.Linear(flat, num_classes))
    if classifier == "slimming":
        hidden = [nn.Linear(flat, VGG_HIDDEN), nn.BatchNorm1d(VGG_HIDDEN), nn.ReLU(True)]
        hidden += [nn.Linear(VGG_HIDDEN, VGG_HIDDEN), nn.BatchNorm1d(VGG_HIDDEN), nn.ReLU(True)]
    else:
        hidden = [nn.Linear(flat, VGG_HIDDEN), nn.ReLU(True), nn.Dropout()]
        hidden += [nn.Linear(VGG_HIDDEN, VGG_HIDDEN), nn.ReLU(True), nn.Dropout()]
    return nn.Sequential(*hidden, nn.Linear(VGG_HIDDEN, num_classes))


def _register_resnet(depth: int) -> None:
    @register_model(f"resnet{depth}", "resnet", resnet_widths(depth), resnet_units, input_size=224)
    def build(in_channels: int, num_classes: int, widths: Sequence[int], input_size: int = 224) -> nn.Module:
        return ImageNetResNet(depth, in_channels, num_classes, widths)  # any input size: a global pool


def _register_vgg(depth: int) -> None:
    @register_model(f"vgg{depth}_bn", "vgg", vgg_widths(depth), vgg_units, VGG_CLASSIFIERS, input_size=224)
    def build(
        in_channels: int, num_classes: int, widths: Sequence[int], classifier: str = "torchvision", input_size=224
    ) -> nn.Module:
        return ImageNetVGG(depth, in_channels, num_classes, widths, classifier, input_size)


@register_model("vgg16_nobn", "vgg", vgg_widths(16), vgg_units, NOBN_CLASSIFIERS, input_size=224, batch_norm=False)
def _vgg16_nobn(
    in_channels: int, num_classes: int, widths: Sequence[int], classifier: str = "torchvision", input_size=224
) -> nn.Module:
    return ImageNetVGG(16, in_channels, num_classes, widths, classifier, input_size, batch_norm=False)


for _depth in RESNET_STAGES:
    _register_resnet(_depth)
for _depth in (11, 16):
    _register_vgg(_depth)
