"""Published numbers set beside ours (study/specs/paper_numbers.csv): one line per number, each with the
source that states it; a row or arm without a line is missing, never guessed."""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from .spec import SPECS_DIR, Spec, SpecError

PAPER_NUMBERS = SPECS_DIR / "paper_numbers.csv"
COLUMNS = ("row", "arm", "mean", "std", "seeds", "what", "source")
ARMS = ("unpruned", "finetune", "scratch-e", "scratch-b", "lottery", "finetune-random", "uniform", "guided")


@dataclass(frozen=True)
class Published:
    """One published test accuracy (percent) and where it is stated."""

    mean: float
    std: float | None
    seeds: int | None
    what: str
    source: str

    def text(self) -> str:
        """'93.14 ± 0.12' or '73.08' (no spread stated)."""
        return f"{self.mean:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


def row_key(spec: Spec) -> str:
    """The paper row a spec stands for: its `paper_row`, else DATASET/METHOD/MODEL/SETTING, SETTING being
    the variant or the ratio in percent (60%)."""
    if spec.paper_row:
        return spec.paper_row
    p = spec.prune
    setting = p.variant or (f"{100 * p.ratio:g}%" if p.ratio is not None else "")
    return f"{spec.dataset}/{p.method}/{spec.model}/{setting}"


def _number(value: str, where: str, field: str, low: float = 0.0, high: float = 100.0) -> float | None:
    if value.strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        raise SpecError(f"{where}: {field} {value!r} is not a number; write it as 73.08 or leave it empty") from None
    if not (low <= x <= high) or math.isnan(x):
        raise SpecError(f"{where}: {field} {value!r} is outside [{low:g}, {high:g}] (accuracy in percent)")
    return x


@functools.cache
def published(path: Path = PAPER_NUMBERS) -> dict[str, dict[str, Published]]:
    """row -> arm -> Published, checked line by line: a bad line is a one-line error naming file and line."""
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if not line.startswith("#")]
    reader = csv.reader([line for _, line in lines])
    header = tuple(next(reader, ()))
    if header != COLUMNS:
        raise SpecError(f"{path}: the header must be {','.join(COLUMNS)} (found {','.join(header) or 'nothing'})")
    out: dict[str, dict[str, Published]] = {}
    for (number, _), cells in zip(lines[1:], reader, strict=True):
        where = f"{path}:{number}"
        if len(cells) != len(COLUMNS):
            raise SpecError(f"{where}: {len(cells)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})")
        row, arm, mean, std, seeds, what, source = (c.strip() for c in cells)
        if arm not in ARMS:
            raise SpecError(f"{where}: arm {arm!r} is not one of {', '.join(ARMS)}")
        if not source:
            raise SpecError(f"{where}: no source; every published number names where it is stated")
        value = _number(mean, where, "mean")
        if value is None:
            raise SpecError(f"{where}: no mean; a number the source does not state gets no line")
        n = _number(seeds, where, "seeds", 1, 1e6)
        if arm in out.setdefault(row, {}):
            raise SpecError(f"{where}: {row} {arm} is given twice")
        out[row][arm] = Published(value, _number(std, where, "std"), None if n is None else int(n), what, source)
    return out
