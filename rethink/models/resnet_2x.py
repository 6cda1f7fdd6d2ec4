"""ResNet-50-2x, the regression-based (channel pruning, He et al. 2017) ResNet-50 that the official code trains
from scratch (rethinking-network-pruning imagenet/regression-pruning/models/resnet_2x.py): each bottleneck's
first conv reads a fixed subset of the block's input channels (filter.pkl, taken from the released model; here
resnet50_2x_selection.json) and every block has its own inner widths (cfg_2x). The residual stream keeps
ResNet-50's widths, so the selections hold at any width scale of the inner convs."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .imagenet import RESNET_STAGES, ImageNetResNet, resnet_units
from .registry import ModelError, register_model

SELECTION_FILE = Path(__file__).with_name("resnet50_2x_selection.json")
# resnet_2x.py's cfg_2x: per block (channels read, conv1 width, conv2 width)
CFG_2X = (
    35, 64, 55, 101, 51, 39, 97, 50, 37, 144, 128, 106, 205, 105, 72, 198, 105, 72, 288, 128, 110, 278, 256, 225,
    418, 209, 147, 407, 204, 158, 423, 212, 155, 412, 211, 148, 595, 256, 213, 606, 512, 433, 1222, 512, 437, 1147,
    512, 440,
)  # fmt: skip
WIDTHS_2X = tuple(w for k in range(0, len(CFG_2X), 3) for w in CFG_2X[k + 1 : k + 3])


@functools.cache
def selections() -> tuple[tuple[int, ...], ...]:
    """The kept input channels of the 16 bottlenecks, checked against cfg_2x's counts and the stream's widths."""
    kept = tuple(tuple(k) for k in json.loads(SELECTION_FILE.read_text())["kept"])
    streams = [64] + [p * 4 for s, p in zip(RESNET_STAGES[50], (64, 128, 256, 512), strict=True) for _ in range(s)]
    counts = [len(k) for k in kept]
    if counts != list(CFG_2X[0::3]) or any(
        max(k) >= streams[i] or list(k) != sorted(set(k)) for i, k in enumerate(kept)
    ):
        raise ModelError(f"{SELECTION_FILE} does not match resnet_2x.py's cfg_2x: reinstall the package")
    return kept


@register_model("resnet50_2x", "resnet", WIDTHS_2X, resnet_units, input_size=224)
def build(in_channels: int, num_classes: int, widths: Sequence[int], input_size: int = 224) -> nn.Module:
    return ImageNetResNet(50, in_channels, num_classes, widths, selections())
