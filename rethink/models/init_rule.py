"""Which fan-scaled rule a library initialised its conv and linear weights with, read off a fresh model.

A library model is rebuilt at pruned widths by cutting a fresh draw (rethink.models.layout); a rule that
scales with a layer's fan would give the cut layer another scale. The rule is read per layer type from the
fresh model's weights: the candidate whose predicted standard deviations fit every layer of that type best
(a fixed standard deviation, as ViTs and ConvNeXts draw, is a candidate when the layers' fans differ), so one
layer whose fans happen to agree cannot decide it; no rule within 15% keeps the draw as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

FAN_LAYERS = (nn.Conv2d, nn.Linear)
Fans = tuple[int, int, int]  # (fan_in, fan_out, fan_out over groups)


def fan_sizes(m: nn.Module) -> Fans:
    w = m.weight
    receptive = w[0][0].numel() if w.dim() > 2 else 1
    groups = getattr(m, "groups", 1)
    return w.shape[1] * receptive, w.shape[0] * receptive, w.shape[0] * receptive // groups


# each rule: the standard deviation it draws at fans (fan_in, fan_out, fan_out / groups)
RULES: dict[str, Callable[[Fans], float]] = {
    "he-fan-in": lambda f: math.sqrt(2 / f[0]),  # kaiming_normal_(mode="fan_in")
    "he-fan-out": lambda f: math.sqrt(2 / f[1]),  # kaiming_normal_(mode="fan_out"): torchvision, timm ResNets
    "he-fan-out-groups": lambda f: math.sqrt(2 / f[2]),  # timm's EfficientNet/MobileNet convs
    "torch-default": lambda f: 1 / math.sqrt(3 * f[0]),  # nn.Conv2d / nn.Linear reset_parameters
    "uniform-fan-out": lambda f: 1 / math.sqrt(3 * f[2]),  # timm's EfficientNet/MobileNet linear
    "lecun-fan-in": lambda f: math.sqrt(1 / f[0]),
}
FIXED = "fixed"  # one standard deviation whatever the fan (trunc_normal(std=.02)): nothing to rescale
TOLERANCE = 0.15  # the largest mean relative misfit for a fan rule to be taken; else the draw is kept as is


def init_rules(model: nn.Module) -> dict[type, str]:
    """The best-fitting rule for each conv/linear type of a freshly initialised model."""
    layers: dict[type, list[tuple[float, Fans]]] = {}
    for m in model.modules():
        if isinstance(m, FAN_LAYERS) and m.weight.numel() >= 64 and not m.weight.is_meta:  # meta: shapes only
            std = float(m.weight.detach().float().std())
            if std > 0:
                layers.setdefault(type(m), []).append((std, fan_sizes(m)))
    rules = {}
    for kind, seen in layers.items():
        misfit = {name: _misfit(seen, rule) for name, rule in RULES.items()}
        if len({f for _, f in seen}) > 1:  # a fixed deviation is told apart only by layers of different fans
            median = sorted(s for s, _ in seen)[len(seen) // 2]
            misfit[FIXED] = _misfit(seen, lambda f, s=median: s)
        best = min(misfit, key=misfit.get)
        rules[kind] = best if misfit[best] <= TOLERANCE else FIXED
    return rules


def _misfit(seen: list[tuple[float, Fans]], rule: Callable[[Fans], float]) -> float:
    return sum(abs(std / rule(f) - 1) for std, f in seen) / len(seen)


def rescale(rule: str, before: Fans, after: Fans) -> float:
    """The factor that takes a weight drawn at `before`'s fans to the rule's scale at `after`'s."""
    if rule == FIXED or rule not in RULES:  # (a meta model's types have no rule: nothing to scale)
        return 1.0
    return RULES[rule](after) / RULES[rule](before)
