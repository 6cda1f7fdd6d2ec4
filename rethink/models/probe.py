"""One forward pass on a blank image of the data's shape, before anything trains: a failure inside the
model becomes one line naming the layer where it happened."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .registry import ModelError


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


@contextlib.contextmanager
def layer_named(model: nn.Module, what: str, error: type[Exception] = ModelError) -> Iterator[None]:
    """Turn a failure inside `model`'s forward pass into `error("WHAT at layer NAME: ...")`."""
    entered: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def enter(m, args):
        entered.append(names[m])

    def leave(m, args, out):
        if entered:
            entered.pop()

    hooks = [*(m.register_forward_pre_hook(enter) for m in names), *(m.register_forward_hook(leave) for m in names)]
    try:
        yield
    except error:
        raise
    except Exception as e:  # a custom op, a dynamic shape, an input the layer cannot take
        where = f" at layer {entered[-1]!r}" if entered and entered[-1] else ""
        raise error(f"{what}{where}: {type(e).__name__}: {first_line(e)}") from e
    finally:
        for h in hooks:
            h.remove()


def check_runs(model: nn.Module, shape: tuple[int, int, int], label: str) -> None:
    """Refuse a model that cannot take one image of `shape` (C, H, W)."""
    side = "x".join(str(s) for s in shape)
    was_training = model.training
    try:
        with layer_named(model, f"{label} does not run on {side} images"), torch.no_grad():
            model.eval()(torch.zeros(2, *shape))
    finally:
        model.train(was_training)
