"""One table across finished reports, in the shape of Liu et al.'s tables (`rethink summary`), with the
published numbers where a source states them, and each setting's verdicts in short."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.plan.load import load_spec
from study.plan.paper import published, row_key

from .paper_table import paper_section, paper_shaped
from .tables import markdown
from .tradeoff import read_report


def _short(verdict: str) -> str:
    return (
        verdict.split(":")[0].split(" (")[0]
        if not verdict.startswith("post hoc")
        else "post hoc: " + _short(verdict.removeprefix("post hoc: "))
    )


def finished_settings(specs: list[str], reports: Path) -> list[tuple[str, dict]]:
    """(setting, verdict.json) of every level of every spec, each header naming the spec's published row."""
    out = []
    for name in specs:
        for level in load_spec(name).levels():
            v = read_report(reports, level)
            out.append((level.name, {**v, "header": {**v["header"], "paper_row": row_key(level)}}))
    return out


def verdicts_table(settings: list[tuple[str, dict]]) -> pd.DataFrame:
    """Per setting: FLOPs reduction and the short verdict of claim 1 at each budget and of claim 3."""
    rows = []
    for name, v in settings:
        h = v["header"]
        row = {"setting": name, "dataset": h["dataset"], "model": h["model"], "method": h["method"]}
        for c in v["claims"]:
            if c["claim"].startswith("1 at budget"):
                row[f"claim 1 ({c['budget']})"] = _short(c["verdict"])
            elif c["claim"].startswith("3"):
                row["claim 3"] = _short(c["verdict"])
        rows.append(row)
    return pd.DataFrame(rows)


def write_summary(specs: list[str], reports: Path, out: Path) -> str:
    """summary.md, summary.csv (the paper-shaped table) and verdicts.csv into `out`; returns the Markdown."""
    settings = finished_settings(specs, reports)
    numbers = published()
    table, _ = paper_shaped(settings, numbers)
    verdicts = verdicts_table(settings)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "summary.csv", index=False)
    verdicts.to_csv(out / "verdicts.csv", index=False)
    lines = ["# Results in the paper's shape", "", *paper_section(settings, numbers), "", "# Verdicts", ""]
    text = "\n".join([*lines, markdown(verdicts)]) + "\n"
    (out / "summary.md").write_text(text)
    return text
