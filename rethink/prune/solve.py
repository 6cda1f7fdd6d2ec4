"""Sizes of one architecture's layers that bring a count (parameters, MACs) closest to a target: every
layer's size scaled by one factor, then the layers between the two nearest scalings moved one by one."""

from __future__ import annotations

import math
from collections.abc import Callable


def _scaled(base: tuple[int, ...], ratios: list[float], s: float, floor: int = 1) -> tuple[int, ...]:
    return tuple(max(floor, min(b, round(b * r * s))) for b, r in zip(base, ratios, strict=True))


def solve(
    base: tuple[int, ...],
    ratios: list[float],
    count: Callable[[tuple[int, ...]], float],
    target: float,
    floor: int,
    gap: float = 0.0,
) -> tuple[int, ...]:
    """The sizes closest to `target`: one scale factor s, bracketed and narrowed by false position on
    sqrt(count) (sizes grow about as s², so the root is found in a few counts; a bisection step whenever
    one side stalls), until the sizes around the target are `gap` apart; then, between those two size
    vectors, the layers that differ moved one by one (a binary search over how many)."""
    top = max(1 / r for r in ratios if r > 0)
    lo, hi = 0.0, top
    c_lo, c_hi = count(_scaled(base, ratios, lo, floor)), count(_scaled(base, ratios, hi, floor))
    if c_hi <= target:
        return _scaled(base, ratios, hi, floor)
    stalled = 0  # how many steps in a row moved the same end
    last = None
    for _ in range(60):
        if c_hi - c_lo <= gap * target or hi - lo <= 1e-9 * top:
            break
        a, b, t = math.sqrt(max(c_lo, 0.0)), math.sqrt(c_hi), math.sqrt(target)
        mid = (lo + hi) / 2 if stalled >= 2 or b <= a else lo + (hi - lo) * (t - a) / (b - a)
        mid = min(max(mid, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo))
        c = count(_scaled(base, ratios, mid, floor))
        side = "lo" if c <= target else "hi"
        stalled = stalled + 1 if side == last else 1
        last = side
        if side == "lo":
            lo, c_lo = mid, c
        else:
            hi, c_hi = mid, c
    below, above = _scaled(base, ratios, lo, floor), _scaled(base, ratios, hi, floor)
    differ = [i for i, (a, b) in enumerate(zip(below, above, strict=True)) if a != b]

    def blend(j: int) -> tuple[int, ...]:
        moved = set(differ[:j])
        return tuple(above[i] if i in moved else below[i] for i in range(len(base)))

    a, b = 0, len(differ)  # count(blend(a)) <= target < count(blend(b))
    while b - a > 1:
        m = (a + b) // 2
        a, b = (m, b) if count(blend(m)) <= target else (a, m)
    return min((blend(a), blend(b)), key=lambda w: abs(count(w) - target))
