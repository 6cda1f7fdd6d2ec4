"""One table across finished reports, in the shape of Liu et al.'s tables (`rethink summary`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.plan.load import load_spec

from .tradeoff import read_report

COLUMNS = [  # (column, arm, pick)
    ("unpruned", "unpruned", "paper"),
    ("fine-tuned", "finetune", "best@E"),
    ("Scratch-E", "scratch-e", "best@E"),
    ("Scratch-B", "scratch-b", "best@B"),
]


def _short(verdict: str) -> str:
    return (
        verdict.split(":")[0].split(" (")[0]
        if not verdict.startswith("post hoc")
        else "post hoc: " + _short(verdict.removeprefix("post hoc: "))
    )


def summary_table(specs: list[str], reports: Path) -> pd.DataFrame:
    rows = []
    for name in specs:
        for level in load_spec(name).levels():
            v = read_report(reports, level)
            cells = {(r["arm"], r["choice"]): r["test_acc"] for r in v["table"]}
            h = v["header"]
            row = {"setting": level.name, "dataset": h["dataset"], "model": h["model"], "method": h["method"]}
            row |= {col: cells.get((arm, pick), "missing") for col, arm, pick in COLUMNS}
            row["FLOPs reduction"] = h["flops_reduction"]
            for c in v["claims"]:
                if c["claim"].startswith("1 at budget"):
                    row[f"claim 1 ({c['budget']})"] = _short(c["verdict"])
                elif c["claim"].startswith("3"):
                    row["claim 3"] = _short(c["verdict"])
            rows.append(row)
    return pd.DataFrame(rows)


def write_summary(specs: list[str], reports: Path, out: Path) -> str:
    """summary.csv and summary.md into `out`; returns the Markdown."""
    table = summary_table(specs, reports)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "summary.csv", index=False)
    text = "Test accuracy (%), mean ± std over seeds\n\n" + table.to_markdown(index=False) + "\n"
    (out / "summary.md").write_text(text)
    return text
