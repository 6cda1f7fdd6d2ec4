"""Predefined layouts of the paper's code: which units a method prunes, and by how much, or (method
`predefined`) the whole architecture.

L1-norm's follow rethinking-network-pruning's cifar/ and imagenet/l1-norm-pruning: layer ids count 3×3 convs
from 1 (the stem); even ids are the first conv of each residual block, the only ones pruned. ThiNet's VGG-Conv
follows imagenet/thinet/models/thinetconv.py: the first 10 convs halved, the last 3 whole. The predefined
architectures are the official code's models that its pruning methods' authors released (imagenet/thinet/
models/thinetvgg.py, imagenet/regression-pruning/models/vgg_5x.py and resnet_2x.py; SSS's ResNet-26/32/41):
widths per conv, the head, or a model of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from rethink.models import ArchSpec

from .registry import PruneConfig
from .surgery import PruneError


@dataclass(frozen=True)
class Variant:
    model: str
    skip: tuple[int, ...] = ()  # ResNet layer ids left alone
    stage_ratios: tuple[float, ...] = ()  # ResNet: ratio per stage
    vgg_layers: tuple[int, ...] = ()  # VGG: 1-based conv indices pruned by half
    stages: tuple[int, ...] = ()  # ResNet: blocks per stage (default: three equal stages, the CIFAR ResNets)
    method: str = "l1-norm"  # the method whose layout it is
    widths: tuple[int, ...] = ()  # predefined: every conv's width
    classifier: str | None = None  # predefined: the head (None: the base's)
    arch_model: str | None = None  # predefined: a registry model of its own (None: the base's model)


VGG_CONV = (32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512)  # thinetconv.py's `conv` list

VARIANTS = {
    "vgg16-a": Variant("vgg16", vgg_layers=(1, 8, 9, 10, 11, 12, 13)),
    "resnet56-a": Variant("resnet56", (16, 20, 38, 54), (0.1, 0.1, 0.1)),
    "resnet56-b": Variant("resnet56", (16, 18, 20, 34, 38, 54), (0.6, 0.3, 0.1)),
    "resnet110-a": Variant("resnet110", (36,), (0.5, 0.0, 0.0)),
    "resnet110-b": Variant("resnet110", (36, 38, 74), (0.5, 0.4, 0.3)),
    # imagenet/l1-norm-pruning/prune.py: the same skips for A and B, ratios per stage of ResNet-34 (3, 4, 6, 3)
    "resnet34-a": Variant("resnet34", (2, 8, 14, 16, 26, 28, 30, 32), (0.3, 0.3, 0.3, 0.0), stages=(3, 4, 6, 3)),
    "resnet34-b": Variant("resnet34", (2, 8, 14, 16, 26, 28, 30, 32), (0.5, 0.6, 0.4, 0.0), stages=(3, 4, 6, 3)),
    # imagenet/thinet/models/thinetconv.py: conv1_1 to conv4_3 at half their width (ThiNet compresses a layer
    # through the next conv's input, so conv5_1 to conv5_3 keep theirs); the 4096-4096 head kept
    "vgg-conv": Variant("vgg16_nobn", vgg_layers=tuple(range(1, 11)), method="thinet"),
    # thinetvgg.py's `gap` and `tiny` lists: VGG-Conv's widths, or narrower, and one Linear on the global average
    # of the last conv's 14×14 map (no fifth max-pool)
    "vgg-gap": Variant("vgg16_nobn", method="predefined", classifier="gap", widths=VGG_CONV),
    "vgg-tiny": Variant(
        "vgg16_nobn",
        method="predefined",
        classifier="gap",
        widths=(16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 256),
    ),
    # resnet_2x.py: ResNet-50 with each bottleneck reading a fixed subset of its input (rethink/models/resnet_2x.py)
    "resnet50-2x": Variant("resnet50", method="predefined", arch_model="resnet50_2x"),
    # imagenet/sparse-structure-selection/README.md: the pre-activation ResNet-50 of SSS's MXNet code with whole
    # residual functions removed (rethink/models/resnet_sss.py)
    **{
        f"sss-resnet{d}": Variant("resnet50_preact", method="predefined", arch_model=f"resnet{d}_sss")
        for d in (26, 32, 41)
    },
    # vgg_5x.py's cfg: the regression-based (channel pruning, He et al. 2017) VGG-16 at 5x fewer FLOPs
    "vgg16-5x": Variant(
        "vgg16_nobn", method="predefined", widths=(24, 22, 41, 51, 108, 89, 111, 184, 276, 228, 512, 512, 512)
    ),
}


def variants_of(method: str) -> list[str]:
    return sorted(name for name, v in VARIANTS.items() if v.method == method)


def variant_for(spec: ArchSpec, config: PruneConfig) -> Variant:
    """The config's variant, checked: one of its method's, defined for the spec's model."""
    own = ", ".join(variants_of(config.method)) or "none"
    if config.variant not in VARIANTS or VARIANTS[config.variant].method != config.method:
        raise PruneError(f"unknown {config.method} variant {config.variant!r}; valid names: {own}")
    v = VARIANTS[config.variant]
    if v.model != spec.model:
        raise PruneError(f"variant {config.variant!r} is defined for {v.model}, not {spec.model}")
    return v


def unit_ratios(spec: ArchSpec, n_units: int, config: PruneConfig) -> dict[int, float]:
    """The removal ratio of each unit: a named variant of the method, or one uniform ratio for every unit."""
    if config.variant is None:
        if config.ratio is None:
            own = ", ".join(variants_of(config.method)) or "none"
            raise PruneError(f"{config.method} needs a ratio or a variant ({own})")
        return dict.fromkeys(range(n_units), config.ratio)
    v = variant_for(spec, config)
    if v.vgg_layers:
        return {i - 1: 0.5 for i in v.vgg_layers}
    stages = v.stages or (n_units // 3,) * 3
    stage_of = [s for s, n in enumerate(stages) for _ in range(n)]
    ratios = {}
    for k in range(n_units):
        if 2 + 2 * k not in v.skip:  # block k's first conv is layer id 2 + 2k
            ratios[k] = v.stage_ratios[stage_of[k]]
    return ratios
