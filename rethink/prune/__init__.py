"""The paper's pruning methods in a registry; importing this package registers every method."""

from . import depgraph, l1_norm, lottery, magnitude, predefined, random_control, sfp, slimming, thinet  # noqa: F401
from .iterative import Round, check_iterative, iterative_magnitude, round_share
from .masks import KeepMasked, apply_masks
from .registry import METHODS, PruneConfig, PrunedModel, method_version, needs_data, prune, register_method
from .surgery import PruneError, apply_keep, zero_pruned_channels
from .variants import VARIANTS, variants_of

__all__ = [
    "METHODS",
    "VARIANTS",
    "KeepMasked",
    "PruneConfig",
    "PruneError",
    "PrunedModel",
    "Round",
    "apply_keep",
    "apply_masks",
    "check_iterative",
    "iterative_magnitude",
    "method_version",
    "needs_data",
    "prune",
    "register_method",
    "round_share",
    "variants_of",
    "zero_pruned_channels",
]
