"""Models by library name: `timm:NAME` and `torchvision:NAME`, built with random weights (nothing is downloaded).

Both libraries are the `models` extra (`pip install 'rethink[models]'`); a name is checked against the
library's own list, and an unknown one is refused with the closest names it knows.
"""

from __future__ import annotations

import difflib
import importlib
import json
from functools import cache

from torch import nn

from .registry import ModelError

LIBRARIES = ("timm", "torchvision")
DEFAULT_INPUT_SIZE = 224  # what both libraries' ImageNet models are made for; any size their layers allow runs


def is_external(name: str) -> bool:
    library, sep, model = name.partition(":")
    return bool(sep) and library in LIBRARIES


def split_name(name: str) -> tuple[str, str]:
    library, sep, model = name.partition(":")
    if not sep or library not in LIBRARIES or not model:
        raise ModelError(f"model {name!r}: write timm:NAME or torchvision:NAME")
    return library, model


def _library(library: str):
    try:
        return importlib.import_module(library)
    except ImportError as e:
        raise ModelError(f"{library}: models need the 'models' extra: pip install 'rethink[models]' ({e})") from e


@cache
def library_names(library: str) -> tuple[str, ...]:
    """Every architecture the library builds (with or without pretrained weights)."""
    mod = _library(library)
    if library == "timm":
        return tuple(mod.list_models())
    return tuple(mod.models.list_models())


def check_name(name: str) -> None:
    """Refuse an unknown library name, naming the closest ones the library knows."""
    library, model = split_name(name)
    names = library_names(library)
    if model not in names:
        close = difflib.get_close_matches(model, names, n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(f'{library}:{c}' for c in close)}" if close else ""
        raise ModelError(f"model {name!r}: {library} has no model {model!r}{hint}")


def parse_args(model_args: str) -> dict:
    """`ArchSpec.model_args` (canonical JSON) as keyword arguments."""
    return json.loads(model_args) if model_args else {}


RESERVED = ("num_classes", "in_chans", "pretrained", "weights", "pretrained_cfg_overlay")


def build_external(name: str, in_channels: int, num_classes: int, model_args: str = "") -> nn.Module:
    """A freshly initialised model of the library (weights drawn from torch's current random state)."""
    check_name(name)
    library, model = split_name(name)
    args = parse_args(model_args)
    taken = sorted(set(args) & set(RESERVED))
    if taken:
        raise ModelError(f"model_args {taken}: set by the spec's dataset and never downloaded; remove them")
    mod = _library(library)
    try:
        if library == "timm":
            return mod.create_model(model, pretrained=False, num_classes=num_classes, in_chans=in_channels, **args)
        if in_channels != 3:
            raise ModelError(f"model {name!r}: torchvision's models take 3 input channels, the data has {in_channels}")
        return mod.models.get_model(model, weights=None, num_classes=num_classes, **args)
    except TypeError as e:  # an argument the constructor does not take
        raise ModelError(f"model {name!r}: model_args {sorted(args)} do not fit: {e}") from e


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """The layers that produce the class scores (never pruned): timm's `get_classifier()`, else every
    Linear or 1x1 Conv whose output is the class count."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module):
        found = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if found:
            return found
    return [m for m in model.modules() if _scores(m, num_classes)]


def _scores(m: nn.Module, num_classes: int) -> bool:
    if isinstance(m, nn.Linear):
        return m.out_features == num_classes
    return isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.out_channels == num_classes


def build_spec(spec) -> nn.Module:
    """An ArchSpec's library model: built fresh, then cut to its pruned layout if it has one."""
    from .layout import apply_layout

    if spec.widths:
        raise ModelError(f"model {spec.model!r}: a library model takes no widths (its pruned shape is its layout)")
    if spec.bn_init != 1.0:
        raise ModelError(f"model {spec.model!r}: bn_init is for the registry's models; a library model keeps its own")
    model = build_external(spec.model, spec.in_channels, spec.num_classes, spec.model_args)
    return apply_layout(model, json.loads(spec.layout), spec.model) if spec.layout else model


def external_entry(name: str):
    """The registry entry of a library model (checked against the library's names)."""
    from .registry import ModelEntry

    check_name(name)
    return ModelEntry(name, "external", (), build_spec, input_size=DEFAULT_INPUT_SIZE)
