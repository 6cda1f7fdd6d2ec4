"""Per-seed results as a long table (`runs.csv`: arm, pick, seed, test_acc, and optionally level, base_seed,
n_test, run_id), written beside every report and read by `rethink verdict` for any table of results, so
that published numbers or another tool's runs go through the same pre-registered analysis as a report's."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rethink.errors import UserError
from study.final.evaluation import FinalResult

REQUIRED = ("arm", "pick", "seed", "test_acc")
OPTIONAL = ("level", "base_seed", "n_test", "run_id")


class TableError(UserError):
    """A table of per-seed results that cannot be analysed; the message names the file, row and column."""


def runs_frame(results: list[FinalResult]) -> pd.DataFrame:
    """A report's final runs in the long format. base_seed: the seed of the base a run fine-tunes from
    (empty for runs that inherit no base); runs that share a base are paired by it."""
    base_seed = {r.run_id: r.seed for r in results if r.arm == "unpruned" and r.choice == "paper"}
    rows = [
        {
            "arm": r.arm,
            "pick": r.choice,
            "seed": r.seed,
            "test_acc": r.test_acc,
            "base_seed": base_seed.get(r.base_run, "") if r.base_run else "",
            "n_test": r.n_test or "",
            "run_id": r.run_id,
        }
        for r in results
    ]
    return pd.DataFrame(rows, columns=[*REQUIRED, "base_seed", "n_test", "run_id"])


@dataclass(frozen=True)
class RunsTable:
    results: dict[str, list[FinalResult]]  # level ("" when the table has none) -> its per-seed results
    percent: bool  # test_acc was given in percent (values above 1) and read as fractions


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == ""


def read_runs(path: Path) -> RunsTable:
    """Read and check a long table; every problem is one line naming the file, the row and the column."""
    if not path.is_file():
        raise TableError(f"{path}: no such file (a CSV with columns {', '.join(REQUIRED)})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a row longer than the header
            df = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserWarning:
        raise TableError(f"{path}: a row has more fields than the header names; name every column") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise TableError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    df.columns = [c.strip() for c in df.columns]
    if missing := [c for c in REQUIRED if c not in df.columns]:
        raise TableError(
            f"{path}: missing column {', '.join(repr(c) for c in missing)}; the table needs {', '.join(REQUIRED)} "
            f"(optional: {', '.join(OPTIONAL)})"
        )
    if df.empty:
        raise TableError(f"{path}: no rows")

    def number(i: int, col: str, kind=float):
        value = df.at[i, col].strip()
        try:
            x = kind(value) if kind is float else int(float(value))
        except ValueError:
            raise TableError(f"{path} row {i + 2}: {col} {value!r} is not a number") from None
        if kind is float and not math.isfinite(x):
            raise TableError(f"{path} row {i + 2}: {col} {value!r} is not a finite number")
        return x

    accs = [number(i, "test_acc") for i in range(len(df))]
    percent = max(accs) > 1
    if percent and max(accs) > 100 or min(accs) < 0:
        raise TableError(
            f"{path}: test_acc must be fractions (0 to 1) or percents (0 to 100); got {min(accs)} to {max(accs)}"
        )
    out: dict[str, list[FinalResult]] = {}
    seen: set[tuple] = set()
    for i in range(len(df)):
        arm, pick = df.at[i, "arm"].strip(), df.at[i, "pick"].strip()
        if not arm or not pick:
            raise TableError(f"{path} row {i + 2}: empty {'arm' if not arm else 'pick'}")
        seed = number(i, "seed", int)
        level = df.at[i, "level"].strip() if "level" in df.columns else ""
        if (level, arm, pick, seed) in seen:
            raise TableError(
                f"{path} row {i + 2}: {arm}:{pick} seed {seed} appears twice" + (f" at level {level}" if level else "")
            )
        seen.add((level, arm, pick, seed))
        base = df.at[i, "base_seed"] if "base_seed" in df.columns else ""
        n_test = df.at[i, "n_test"] if "n_test" in df.columns else ""
        run_id = df.at[i, "run_id"].strip() if "run_id" in df.columns else ""
        acc = accs[i] / 100 if percent else accs[i]
        result = FinalResult(
            arm,
            pick,
            seed,
            acc,
            math.nan,
            math.nan,
            0,
            {},
            run_id or f"row{i + 2}",  # rows with one run_id are one run (the same runs under two picks)
            "" if _blank(base) else f"base-seed-{number(i, 'base_seed', int)}",
            None,
            0 if _blank(n_test) else number(i, "n_test", int),
        )
        out.setdefault(level, []).append(result)
    return RunsTable(out, percent)


def pooled_by_seed(levels: dict[str, list[FinalResult]]) -> list[FinalResult]:
    """Operating points pooled: each (arm, pick) cell's seeds averaged across the levels before any test, so
    runs that share a per-seed base across levels are not counted as independent. Only seeds present at
    every level of a cell are pooled; a base and a run id stand for the seed's runs across levels."""
    cells: dict[tuple[str, str, int], list[FinalResult]] = {}
    for results in levels.values():
        for r in results:
            cells.setdefault((r.arm, r.choice, r.seed), []).append(r)
    pooled = []
    for (arm, pick, seed), rs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        if len(rs) != len(levels):
            continue
        first = rs[0]
        pooled.append(
            FinalResult(
                arm,
                pick,
                seed,
                sum(r.test_acc for r in rs) / len(rs),
                math.nan,
                math.nan,
                0,
                {},
                "|".join(r.run_id for r in rs),
                first.base_run if all(r.base_run for r in rs) else "",
                None,
                min((r.n_test for r in rs if r.n_test), default=0),
            )
        )
    return pooled
