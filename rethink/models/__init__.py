"""Width-configurable CIFAR and ImageNet models in a registry; importing this package registers every family."""

from . import densenet, preresnet, resnet, vgg  # noqa: F401, I001  (registration side effects)
from . import imagenet, resnet_2x, resnet_sss  # noqa: F401, I001  (after the CIFAR models: each family's first entry is a CIFAR one)
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
