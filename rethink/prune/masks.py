"""Masks of unstructured pruning, kept exactly zero through training (momentum and weight decay
would bring pruned weights back, so they are re-applied after every optimizer step)."""

from __future__ import annotations

import torch
from torch import nn

from rethink.train import Callback


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


class KeepMasked(Callback):
    """Training callback: masks applied at the start and after every optimizer step."""

    every_process = True  # changes the weights: every process of a distributed run applies it

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks = masks
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_start(self, model, optimizer) -> None:
        params = dict(model.named_parameters())
        self._pairs = [(params[k], m.to(params[k].device, params[k].dtype)) for k, m in self.masks.items()]
        self.after_step(model)

    @torch.no_grad()
    def after_step(self, model) -> None:
        torch._foreach_mul_([p for p, _ in self._pairs], [m for _, m in self._pairs])
