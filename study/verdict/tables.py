"""Tables a person reads: counts as integers, numbers at a sensible precision, no `nan` (a dash, its reason
said beside the table), no Python dicts or tuples. Every table of report.md goes through `markdown`."""

from __future__ import annotations

import math
from numbers import Number

import pandas as pd

DASH = "—"


def plain(value) -> str:
    """A value as a reader writes it: dicts as 'k v, k v', sequences joined, numbers short, none a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items()) or DASH
    if isinstance(value, list | tuple | set):
        return ", ".join(plain(v) for v in value) or DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Number):
        x = float(value)
        if x.is_integer() and abs(x) < 1e6:
            return str(int(x))
        return f"{x:.3g}" if abs(x) >= 1e6 or abs(x) < 1e-3 else f"{x:.4g}"
    return str(value)


def readable(df: pd.DataFrame, formats: dict[str, str] | None = None) -> pd.DataFrame:
    """Every cell as text: `formats` (column -> format spec, e.g. '.2f') where given, else `plain`."""
    formats = formats or {}
    out = df.copy().astype(object)
    for col in out.columns:
        spec = formats.get(col)
        out[col] = [
            DASH
            if v is None or (isinstance(v, float) and math.isnan(v))
            else format(v, spec)
            if spec and isinstance(v, Number)
            else plain(v)
            for v in df[col]
        ]
    return out


def markdown(df: pd.DataFrame, formats: dict[str, str] | None = None, index: bool = False) -> str:
    """A pipe table of `readable(df)`: text cells only, so no float formatting of the writer applies."""
    return readable(df, formats).to_markdown(index=index, disable_numparse=True)
