"""One colour per arm and one marker and line style per budget, for every figure of every mode. Keys may be
study keys (`finetune@E`), picks (`finetune:best@E`) or arms (`scratch-b`): the arm decides the colour,
the budget the marker. An arm the table does not list gets a colour of its own from the spare palette,
chosen by its name (the same in every figure and every report), never the grey of 'no arm'."""

from __future__ import annotations

import hashlib

ARM_COLOURS = {
    "unpruned": "black",
    "finetune": "tab:blue",
    "finetune-random": "tab:cyan",
    "scratch-e": "tab:orange",
    "scratch-b": "tab:green",
    "scratch": "tab:olive",  # pareto mode's one study for Scratch-E and Scratch-B
    "lottery": "tab:purple",
    "uniform": "tab:red",  # the architecture arms of the paper's Section 5
    "guided": "tab:brown",
    "transferred": "tab:pink",
}
SPARE = ("gold", "navy", "teal", "indigo", "darkred", "lime", "slateblue", "chocolate")  # arms added later
FALLBACK = "grey"  # what no arm is drawn in
MARKERS = {"E": "o", "B": "s", "P": "^", None: "D"}
LINES = {"E": "-", "B": "--", "P": ":", None: "-."}


def split_key(key: str) -> tuple[str, str | None]:
    """(arm, budget) of a study key, a pick label or an arm: `scratch-b@P` -> (scratch-b, P);
    `finetune:best@E` -> (finetune, E); `finetune:rewind` -> (finetune, None)."""
    arm, _, pick = key.partition(":")
    arm, _, cap = arm.partition("@")
    budget = cap or pick.partition("@")[2] or None
    return arm, budget if budget in MARKERS else None


def arm_colour(key: str) -> str:
    arm, _ = split_key(key)
    if arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    return SPARE[int(hashlib.sha256(arm.encode()).hexdigest(), 16) % len(SPARE)]


def marker(key: str) -> str:
    return MARKERS[split_key(key)[1]]


def line_style(key: str) -> str:
    return LINES[split_key(key)[1]]


def legend_name(key: str) -> str:
    """The arm and budget as a reader names them: `scratch-b@B` -> 'scratch-b (budget B)'."""
    arm, budget = split_key(key)
    rest = key.partition(":")[2]
    if rest:
        return f"{arm} {rest}"
    return f"{arm} (budget {budget})" if budget else arm
