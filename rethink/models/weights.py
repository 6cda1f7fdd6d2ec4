"""A base model's weights from a local file: a state dict saved by torch.save (read with weights_only=True)
or a .safetensors file, checked key by key and shape by shape against the model the spec builds."""

from __future__ import annotations

import functools
import hashlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from .registry import ModelError

WRAPPERS = ("state_dict", "model_state_dict", "model")  # training scripts' checkpoints keep the weights under these
PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel's and torch.compile's, stripped when every key has it
SHOWN = 4  # mismatched keys named in an error


class WeightsError(ModelError):
    """A weights file that is missing, unreadable, unsafe, or does not fit the model."""


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256 (read once per size and modification time)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights: {p} not found; give the path of a local checkpoint (.pt, .pth, .safetensors)")
    st = p.stat()
    return _sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors a weights file holds, unwrapped from a training script's checkpoint and stripped of a
    DDP or torch.compile prefix; nothing in it is executed (weights_only=True, or safetensors)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights: {p} not found; give the path of a local checkpoint (.pt, .pth, .safetensors)")
    if p.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError(
                f"weights: {p} is a safetensors file: pip install safetensors (or the models extra)"
            ) from None

        try:
            state = load_file(str(p), device="cpu")
        except (SafetensorError, OSError) as e:
            raise WeightsError(f"weights: {p} is not a readable safetensors file ({e})") from None
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(p, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightsError(
                f"weights: {p} cannot be read with torch.load(weights_only=True) ({first[:200]}); save the "
                f"weights with torch.save(model.state_dict(), path)"
            ) from None
    return _without_prefix(_unwrap(state, p))


def _unwrap(state, p: Path):
    while isinstance(state, dict) and not _all_tensors(state):
        inner = next((state[k] for k in WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            keys = ", ".join(map(str, list(state)[:6]))
            raise WeightsError(
                f"weights: {p} holds a dict with keys {keys}, not a state dict (nor one under "
                f"{' / '.join(WRAPPERS)}); save the weights with torch.save(model.state_dict(), path)"
            )
        state = inner
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"weights: {p} holds {type(state).__name__}, not a state dict of tensors")
    return state


def _all_tensors(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _without_prefix(state: dict) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if all(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path, name: str = "the model") -> None:
    """Load the file's weights into `model`, every key and shape matching; else a one-line error naming the
    first mismatches (a head built for another class count among them)."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} is {_shape(state[k])} in the file, {_shape(own[k])} in the model"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if shapes:
        problems.append(_first(shapes))
    if problems:
        raise WeightsError(
            f"weights: {path} does not fit {name} as the spec builds it ({len(own)} tensors): "
            f"{'; '.join(problems)}; the file must be this architecture's state dict, its head sized for the "
            f"data's classes"
        )
    model.load_state_dict({k: state[k] for k in own})


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "a scalar"


def _first(items: list[str]) -> str:
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more
