"""Picks for the final evaluation: each report row's best trial overall or within a compute budget, and the
study's baselines under the rows whose budget they fit. A pick with no trial is reported as missing."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from rethink.arms import ARCH_ARMS
from study.plan.layout import Budgets, cap_of, rows_of
from study.plan.spec import Spec

CAPS_PER_ROW = {  # pareto mode: the budget-capped picks of each report row (train account; P: pipeline)
    "finetune": ("best", "best@E", "best@B", "best@P"),
    "lottery": ("best", "best@E", "best@B", "best@P"),
    "scratch-e": ("best@E",),
    "scratch-b": ("best@B", "best@P"),
    "unpruned": ("best",),
    "finetune-random": ("best", "best@E", "best@B", "best@P"),
    "uniform": ("best@E", "best@B", "best@P"),  # Section 5's arms: from scratch at every budget (claim 4)
    "guided": ("best@E", "best@B", "best@P"),
    "transferred": ("best@E", "best@B", "best@P"),
}

ROW_BUDGET = {"scratch-e": "E", "scratch-b": "B"}  # the train-account budget that defines a scratch row


@dataclass(frozen=True)
class Choice:
    """A config picked from a study for the final evaluation, under the report row it stands for."""

    arm: str  # the report row: finetune, scratch-e, scratch-b, lottery, unpruned
    study_arm: str  # the study it came from (pareto mode: `scratch` for Scratch-E and Scratch-B)
    name: str  # best, best@E, best@B, best@P, paper, rewind, literature, ...
    params: dict
    trial: int | None
    val_acc: float | None
    source: str = ""  # a baseline's source; for tuned picks, how it was picked
    candidates: tuple[int, ...] = ()  # tuned picks: the pool's top trials, best first, for the confirmation
    kind: str = "searched"  # searched, or baseline (the trial a tuned pick came from, or a named baseline)


def budget_of(choice: Choice) -> str | None:
    """The budget a pick is held to: its `@E/B/P`, else its row's own (Scratch-B: B; unpruned: none; else E)."""
    label = choice.name.partition("@")[2]
    if label in ("E", "B", "P"):
        return label
    return None if choice.arm == "unpruned" else ROW_BUDGET.get(choice.arm, "E")


@dataclass(frozen=True)
class Missing:
    """A pick that has no trial: reported as missing, never replaced by another."""

    arm: str
    name: str
    why: str


def _flops(t: optuna.trial.FrozenTrial, key: str) -> float:
    """A trial's train_flops or pipeline_flops (every complete trial of the current layout records both)."""
    return float(t.user_attrs[key])


def pick_labels(spec: Spec, study_arm: str, row: str) -> tuple[str, ...]:
    """The tuned picks a study gives a row: capped, `best@CAP` (the unpruned row: `best`); pareto, the
    row's budget-capped picks; fixed-budget, `best`."""
    if spec.study.mode == "capped":
        return ("best",) if row == "unpruned" else (f"best@{cap_of(study_arm)}",)
    if spec.study.mode == "pareto":
        if row in ARCH_ARMS:  # only at the budgets claim 4 is judged at
            return tuple(c for c in CAPS_PER_ROW[row] if c.partition("@")[2] in spec.verdict.budgets)
        return CAPS_PER_ROW[row]
    return ("best",)


def home_study(spec: Spec, study_arm: str, row: str) -> bool:
    """Whether a study's baselines stand under `row`: in capped mode only the study at the row's own budget
    gives them (Scratch-B's baselines from `scratch-b@B`, not again from `scratch-b@P`)."""
    return spec.study.mode != "capped" or cap_of(study_arm) == ROW_BUDGET.get(row, "E")


def choose(study: optuna.Study, study_arm: str, spec: Spec, caps: Budgets) -> tuple[list[Choice], list[Missing]]:
    """Each row's picks: the best trial (val acc, then fewer FLOPs) overall or within a budget, and the
    study's baselines under the rows whose budget they fit."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pareto = spec.study.mode == "pareto"
    choices: list[Choice] = []
    missing: list[Missing] = []

    def ranked(trials):
        return sorted(trials, key=lambda t: (t.values[0], -_flops(t, "train_flops"), -t.number), reverse=True)

    for row in rows_of(spec, study_arm):
        for label in pick_labels(spec, study_arm, row):
            cap = label.partition("@")[2] if pareto else ""  # capped: within its cap by construction
            pool = [
                t for t in done if not cap or caps.within(cap, _flops(t, "train_flops"), _flops(t, "pipeline_flops"))
            ]
            top = ranked(pool)[: spec.select.top_k]
            t = top[0] if top else None
            if t is None:
                why = "no completed trial" + (f" within budget {cap}" if cap else "")
                missing.append(Missing(row, label, why))
                continue
            within = f" within budget {cap}" if cap else ""
            if searched_cap := cap_of(study_arm):
                within = f" searched up to budget {searched_cap}"
            how = f"tuned: best validation accuracy of {len(pool)} trials{within}"
            kind = "baseline" if t.user_attrs.get("baseline") else "searched"
            candidates = tuple(c.number for c in top)
            choices.append(Choice(row, study_arm, label, dict(t.params), t.number, t.values[0], how, candidates, kind))
        if row == "unpruned" or not home_study(spec, study_arm, row):
            continue  # unpruned: its paper recipe is the per-seed base of the final evaluation
        for t in done:
            name = t.user_attrs.get("baseline")
            if not name:
                continue
            fits = (
                t.user_attrs.get("baseline_row") == row
                if t.user_attrs.get("baseline_row")
                else not pareto or study_arm != "scratch" or caps.within(ROW_BUDGET[row], _flops(t, "train_flops"), 0)
            )
            if fits:
                source = t.user_attrs.get("baseline_source", "")
                choices.append(
                    Choice(
                        row,
                        study_arm,
                        name.partition("@")[0],
                        dict(t.params),
                        t.number,
                        t.values[0],
                        source,
                        (),
                        "baseline",
                    )
                )
    return choices, missing
