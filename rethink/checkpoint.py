"""Checkpoints: arch spec + state_dict (+ masks), written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .models import ArchSpec, ModelError, build_model


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, unsafe, or whose weights do not match its arch spec."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    spec: ArchSpec
    state_dict: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ArchSpec,
    masks: dict[str, torch.Tensor] | None = None,
    meta: dict | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "arch": spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "masks": None if masks is None else {k: v.detach().cpu().bool() for k, v in masks.items()},
        "meta": dict(meta or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint under the real name
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused, not a weights-only checkpoint (loading it would run pickled code); save tensors "
            f"with rethink or torch.save(state_dict)"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        first = str(e).split(". ")[0].splitlines()[0]
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({first})") from None
    if not isinstance(payload, dict) or not {"arch", "state_dict"} <= set(payload):
        raise CheckpointError(f"{path}: not a rethink checkpoint (needs 'arch' and 'state_dict')")
    try:
        spec = ArchSpec.from_dict(payload["arch"])
    except (ModelError, TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: bad arch spec: {e}") from e
    _check_tensors(payload["state_dict"], "state_dict", path)
    if payload.get("masks") is not None:
        _check_tensors(payload["masks"], "masks", path)
    if not isinstance(payload.get("meta") or {}, dict):
        raise CheckpointError(f"{path}: 'meta' must be a dict, got {type(payload['meta']).__name__}")
    return Checkpoint(spec, payload["state_dict"], payload.get("masks"), payload.get("meta") or {})


def _check_tensors(d, key: str, path: Path) -> None:
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: {key!r} must be a dict of tensors, got {type(d).__name__}")
    bad = [k for k, v in d.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {key!r} holds non-tensor entries (e.g. {bad[0]!r}); not a rethink checkpoint")


def model_from_checkpoint(ckpt: Checkpoint, source: str = "checkpoint") -> nn.Module:
    """Build the model of the arch spec and load the weights; a mismatch is an error naming the tensors.
    The shapes are compared on a model with no storage (the meta device) first, so a declared arch that
    the weights do not back (huge widths, a billion classes) costs nothing before it is refused."""
    try:
        with torch.device("meta"):
            expected = build_model(ckpt.spec).state_dict()
    except ModelError as e:
        raise CheckpointError(f"{source}: {e}") from e
    missing = sorted(set(expected) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(expected))
    shapes = [
        f"{k}: {tuple(ckpt.state_dict[k].shape)} vs spec {tuple(v.shape)}"
        for k, v in expected.items()
        if k in ckpt.state_dict and ckpt.state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source}: weights do not match arch spec {ckpt.spec.model} {list(ckpt.spec.widths)}: "
            f"missing={missing[:5]} unexpected={unexpected[:5]} shape mismatches={shapes[:5]}"
        )
    model = build_model(ckpt.spec)
    model.load_state_dict(ckpt.state_dict)
    return model


def load_checkpoint(path: str | Path) -> tuple[nn.Module, Checkpoint]:
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, str(path)), ckpt


def load_cached(path: str | Path, digest: str) -> tuple[nn.Module, Checkpoint]:
    """A checkpoint found by the digest that named it: refused unless its meta carries that digest (a file
    replaced by another one would otherwise be used silently)."""
    model, ckpt = load_checkpoint(path)
    if ckpt.meta.get("digest") != digest:
        raise CheckpointError(
            f"{path}: holds digest {ckpt.meta.get('digest')!r}, not {digest!r} that names it (the file was replaced "
            f"or made by an older rethink); delete it to make it again"
        )
    return model, ckpt
