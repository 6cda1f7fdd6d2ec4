"""Channel selection (Liu et al. 2017): passes on a chosen subset of channels; the subset is a buffer."""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelError


class ChannelSelection(nn.Module):
    def __init__(self, available: int, selected: int):
        super().__init__()
        if not 1 <= selected <= available:
            raise ModelError(f"a channel selection takes 1..{available} of {available} channels, got {selected}")
        self.register_buffer("index", torch.arange(selected))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index.numel() == x.shape[1]:
            return x
        return x.index_select(1, self.index)


class PreActHead(nn.Module):
    """The classifier of pre-activation nets: BN → channel selection → ReLU → global pool → linear."""

    def __init__(self, channels: int, selected: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.select = ChannelSelection(channels, selected)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(selected, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.select(self.bn(x)))), 1))
