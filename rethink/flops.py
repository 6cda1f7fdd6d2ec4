"""FLOPs accounting. Unit: multiply-accumulates (MACs) of conv and linear layers for one image's
forward pass, the unit of Li et al. 2017 and Liu et al. 2019 ("FLOPs" there). Counted with
torch.utils.flop_counter, which reports 2 FLOPs per MAC; BN, ReLU, pooling and shortcuts are not counted.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3× forward


_COUNTS: dict[tuple, tuple[float, dict[str, float]]] = {}  # structure -> (total FLOPs, FLOPs per module)


def _structure(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple:
    """What a count depends on: the module tree (layers with their strides and kernels), every parameter's
    and buffer's name and shape, the input shape."""
    shapes = tuple((n, tuple(t.shape)) for n, t in [*model.named_parameters(), *model.named_buffers()])
    return repr(model), shapes, tuple(input_shape)


def _counted(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[float, dict[str, float]]:
    """(total FLOPs, FLOPs per module name) of one forward pass, counted once per structure."""
    key = _structure(model, input_shape)
    if key in _COUNTS:
        return _COUNTS[key]
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
    per_module = {name: float(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    _COUNTS[key] = (float(counter.get_total_flops()), per_module)
    return _COUNTS[key]


def forward_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Dense MACs of one forward pass of one image of shape (C, H, W)."""
    return int(_counted(model, input_shape)[0]) // 2


def nonzero_forward_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """MACs counting only non-zero conv weights (unstructured pruning); linear layers stay dense."""
    total, per_module = _counted(model, input_shape)
    prefix = type(model).__name__
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            dense = per_module.get(f"{prefix}.{name}", 0.0)
            density = float((m.weight != 0).sum()) / m.weight.numel()
            total -= dense * (1.0 - density)
    return int(round(total)) // 2


def conv_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, dict[str, int]]:
    """(dense MACs of one forward pass, dense MACs of each conv by its weight's name): a masked model's
    non-zero MACs are the total less each conv's MACs times its pruned share."""
    total, per_module = _counted(model, input_shape)
    prefix = type(model).__name__
    per_conv = {
        f"{name}.weight": int(per_module.get(f"{prefix}.{name}", 0.0)) // 2
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }
    return int(total) // 2, per_conv


def param_count(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters (BN included); with nonzero=True only the non-zero ones."""
    if nonzero:
        return int(sum(int((p != 0).sum()) for p in model.parameters()))
    return int(sum(p.numel() for p in model.parameters()))


def training_flops(forward_macs: int, images_seen: int) -> float:
    """Training compute of a run in MACs: 3 × forward × images seen."""
    return float(TRAIN_FLOPS_PER_FORWARD * forward_macs * images_seen)
