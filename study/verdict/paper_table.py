"""The results in the shape of Liu et al.'s tables: per setting, the unpruned network, fine-tuning and the
scratch arms (the tuned pick and each baseline on its own row), mean ± std over the final seeds, n, epochs,
training compute in MACs, parameter and FLOPs reduction; the published number, where a source states it,
beside the row that runs the published recipe (the arm's `paper` row), its source as a footnote."""

from __future__ import annotations

import pandas as pd

from study.plan.paper import Published

from .claims import ARM_ORDER
from .tables import DASH, markdown, plain

ARM_NAMES = {
    "unpruned": "unpruned",
    "finetune": "fine-tuned",
    "finetune-random": "fine-tuned, random selection",
    "scratch-e": "Scratch-E",
    "scratch-b": "Scratch-B",
    "lottery": "lottery ticket (winning init)",
    "uniform": "uniform, same size (scratch)",
    "guided": "guided, same size (scratch)",
    "transferred": "transferred pattern, same size (scratch)",
}
MISSING = "missing"
MISSING_NOTE = (
    f"{MISSING}: no source in study/specs/paper_numbers.csv states this number; it is left out, never guessed"
)


PUBLISHED_ONLY = "published model"  # an arm the spec does not train (a predefined architecture's fine-tune)


def _row_name(choice: str) -> str:
    """A pick as a reader names it: `best@B` -> 'tuned (best at B)', a baseline by its name."""
    if choice == PUBLISHED_ONLY:
        return "published model, not trained here"
    if choice.startswith("best@"):
        return f"tuned (best at {choice.partition('@')[2]})"
    return "tuned" if choice == "best" else f"{choice} recipe"


def _accuracy(mean: float, std: float | None, n: int) -> str:
    if mean is None or mean != mean:
        return DASH
    if n < 2 or std is None or std != std:
        return f"{100 * mean:.2f} (one seed)"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _order(r: dict) -> tuple[int, str]:
    return (ARM_ORDER.index(r["arm"]) if r["arm"] in ARM_ORDER else len(ARM_ORDER), r["choice"])


def _published_row(rows: list[dict], arm: str) -> int:
    """The index of the row the published number stands beside: the arm's `paper` recipe, else its first row."""
    mine = [i for i, r in enumerate(rows) if r["arm"] == arm]
    return next((i for i in mine if rows[i]["choice"] == "paper"), mine[0])


def paper_shaped(
    settings: list[tuple[str, dict]], numbers: dict[str, dict[str, Published]]
) -> tuple[pd.DataFrame, list[str]]:
    """(table, footnotes) over (setting name, verdict.json) pairs; `numbers` is `study.plan.paper.published()`."""
    out, notes, sources = [], [], {}
    for setting, v in settings:
        h = v["header"]
        row_key = h.get("paper_row")
        trained = {r["arm"] for r in v["table"]}
        untrained = [a for a in numbers.get(row_key, {}) if a not in trained] if row_key else []
        rows = sorted([*v["table"], *({"arm": a, "choice": PUBLISHED_ONLY, "seeds": 0} for a in untrained)], key=_order)
        marks = dict.fromkeys(range(len(rows)), "")
        for arm in dict.fromkeys(r["arm"] for r in rows):
            p = numbers.get(row_key, {}).get(arm) if row_key else None
            if p is None:
                marks[_published_row(rows, arm)] = MISSING
                continue
            key = (p.what, p.source)
            sources.setdefault(key, len(sources) + 1)
            seeds = f", {p.seeds} seeds" if p.seeds else ""
            marks[_published_row(rows, arm)] = f"{p.text()} [{sources[key]}]" + seeds
        for i, r in enumerate(rows):
            pruned = r["arm"] != "unpruned"
            out.append(
                {
                    "setting": setting,
                    "arm": ARM_NAMES.get(r["arm"], r["arm"]),
                    "row": _row_name(r["choice"]),
                    "test acc (%)": _accuracy(r.get("test_acc_mean"), r.get("test_acc_std"), int(r["seeds"])),
                    "n": int(r["seeds"]),
                    "epochs": int(r["epochs"]) if r.get("epochs", float("nan")) == r.get("epochs") else DASH,
                    "training MACs": plain(r.get("final_train_flops")),
                    "params −": h.get("params_reduction", DASH) if pruned else "0%",
                    "FLOPs −": h.get("flops_reduction", DASH) if pruned else "0%",
                    "published (%)": marks[i],
                }
            )
        notes.append(f"{setting}: published row `{row_key}`" if row_key else f"{setting}: no published row named")
    footnotes = [f"[{n}] {what}: {source}" for (what, source), n in sources.items()]
    if any(r["published (%)"] == MISSING for r in out):
        footnotes.append(MISSING_NOTE)
    return pd.DataFrame(out), [*footnotes, *notes]


PAPER_SHAPE_NOTE = (
    "Mean ± std (sample std) of test accuracy over the final seeds, each trained on train+validation; training "
    "MACs per final run (3 × forward MACs × images seen); params − and FLOPs − are the pruned network's reduction "
    "against the unpruned one (non-zero weights for weight-level pruning). A published number stands beside the "
    "row that runs the published recipe (the arm's paper recipe)."
)


def paper_section(settings: list[tuple[str, dict]], numbers: dict[str, dict[str, Published]]) -> list[str]:
    """Markdown lines: the table, its note and footnotes (one setting's report, or `rethink summary`)."""
    table, footnotes = paper_shaped(settings, numbers)
    if len(settings) == 1:
        table = table.drop(columns="setting")
    return [markdown(table), "", PAPER_SHAPE_NOTE, "", *[f"- {f}" for f in footnotes]]
