"""Width-configurable CIFAR models in a registry; importing this package registers every family."""

from . import resnet, vgg  # noqa: F401  (registration side effects)
from .registry import MODELS, ArchSpec, ModelError, build_model, default_spec, model_entry, register_model

__all__ = ["MODELS", "ArchSpec", "ModelError", "build_model", "default_spec", "model_entry", "register_model"]
