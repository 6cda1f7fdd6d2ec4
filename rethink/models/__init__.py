"""Width-configurable CIFAR models in a registry; importing this package registers every family."""

from . import densenet, preresnet, resnet, vgg  # noqa: F401  (registration side effects)
from .registry import (
    MODELS,
    ArchSpec,
    ModelError,
    Unit,
    build_model,
    default_spec,
    model_entry,
    prunable_units,
    register_model,
)

__all__ = [
    "MODELS",
    "ArchSpec",
    "ModelError",
    "Unit",
    "build_model",
    "default_spec",
    "model_entry",
    "prunable_units",
    "register_model",
]
