"""How the picks were made, on the search's own account: each study's searched epochs against its range,
each row's pick (searched trial or baseline) with its compute against its budget, and the confirmation of
the tuned picks on more seeds with its cost."""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
import pandas as pd
from optuna.trial import TrialState

from study.final.confirm import Confirmation, ConfirmCost
from study.final.picks import Choice, budget_of
from study.plan.layout import Budgets, epoch_range
from study.plan.spec import Spec

from .proxy import proxy_correlation, proxy_sentence
from .tables import markdown

CapsFor = Callable[[str], Budgets]  # a study's budgets by its key (an architecture arm's are its own)


def searched_epochs(spec: Spec, studies: dict[str, optuna.Study], caps_for: CapsFor) -> pd.DataFrame:
    """Per study: the epoch range it searched, and the fewest and most epochs its searched trials ran."""
    rows = []
    for key, study in studies.items():
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get("baseline")
        ]
        epochs = [t.params["epochs"] for t in done if "epochs" in t.params]
        rng = epoch_range(spec, key, caps_for(key))
        rows.append(
            {
                "study": study.study_name,
                "range": f"{rng[0]}-{rng[1]}{' (log)' if rng[2] else ''}" if rng else "fixed",
                "searched trials": len(done),
                "min epochs": min(epochs) if epochs else None,
                "max epochs": max(epochs) if epochs else None,
            }
        )
    return pd.DataFrame(rows)


def picks_table(choices: list[Choice], studies: dict[str, optuna.Study], caps_for: CapsFor) -> pd.DataFrame:
    """Each row's picks on the search's account (the budgets' own: the training split), within or not."""
    rows = []
    for c in choices:
        study = studies.get(c.study_arm)  # None: a fixed recipe of the claim 2 protocol, from no study
        t = study.trials[c.trial] if study is not None and c.trial is not None else None
        train = float(t.user_attrs.get("train_flops", math.nan)) if t else math.nan
        pipeline = float(t.user_attrs.get("pipeline_flops", math.nan)) if t else math.nan
        label = budget_of(c)
        fits = label is not None and t is not None and caps_for(c.study_arm).within(label, train, pipeline)
        # n/a: the unpruned row, or a fixed recipe of the claim 2 protocol (the base's E epochs)
        within = "n/a" if label is None or t is None else "yes" if fits else "NO"
        rows.append(
            {
                "arm": c.arm,
                "pick": c.name,
                "is": c.kind,
                "study": study.study_name if study is not None else "",
                "trial": c.trial,
                "epochs": c.params.get("epochs"),
                "search train MACs": train,
                "search pipeline MACs": pipeline,
                "budget": label or "",
                "within": within,
            }
        )
    return pd.DataFrame(rows)


def confirmation_table(confirmations: list[Confirmation]) -> pd.DataFrame:
    rows = []
    for conf in confirmations:
        for cand in conf.candidates:
            rows.append(
                {
                    "arm": conf.arm,
                    "pick": conf.name,
                    "trial": cand.trial,
                    "is": cand.kind,
                    "val acc per seed (search, then confirmation)": ", ".join(f"{a:.4f}" for a in cand.val_accs),
                    **({"proxy val acc": cand.proxy_acc} if math.isfinite(cand.proxy_acc) else {}),
                    "base per seed": ", ".join(str(b) for b in cand.bases) if cand.bases else "(no base inherited)",
                    "mean": cand.mean,
                    "std": cand.std,
                    "chosen": "yes" if cand.trial == conf.chosen else "",
                }
            )
    return pd.DataFrame(rows)


def bases_sentence(spec: Spec, confirmations: list[Confirmation]) -> str:
    """How many bases the picks of the arms that inherit one rest on."""
    inheriting = sorted({(c.arm, c.n_bases) for c in confirmations if c.candidates and c.candidates[0].bases})
    if not inheriting:
        return ""
    arms = ", ".join(f"{arm}'s pick rests on {n} base{'s' if n > 1 else ''}" for arm, n in inheriting)
    few = " (the search's own only: [select] bases = 0)" if spec.select.n_bases == 0 else ""
    return (
        f"Arms that inherit a base were confirmed over bases, as the final evaluation varies them: {arms}{few} "
        f"(the search's base and {spec.select.n_bases} more trained on the search split with seeds of their own, "
        "each pruned by the spec's method; the mean is taken over bases)."
    )


def selection_section(
    spec: Spec,
    studies: dict[str, optuna.Study],
    caps_for: CapsFor,
    choices: list[Choice],
    confirmations: list[Confirmation],
    cost: ConfirmCost | None,
) -> tuple[list[str], dict]:
    """The report's section on the picks (markdown lines) and the same as data for verdict.json."""
    epochs = searched_epochs(spec, studies, caps_for)
    picks = picks_table(choices, studies, caps_for)
    confirm = confirmation_table(confirmations)
    correlation = proxy_correlation(confirmations, spec.seed)
    lines = ["## How the picks were made (search account: the training split the budgets are counted on)", ""]
    lines += ["Epochs each study searched:", "", markdown(epochs), ""]
    lines += ["Picks, each a searched trial or a baseline, with its search-time compute against its budget:", ""]
    lines += [markdown(picks), ""]
    if not confirm.empty:
        lines += [
            f"Confirmation: each tuned pick's top {spec.select.top_k} trials trained again on {spec.select.seeds} "
            "more seeds (same split); the pick is the best mean validation accuracy:",
            "",
            markdown(confirm, {"mean": ".4f", "std": ".4f"}),
            "",
        ]
        if sentence := bases_sentence(spec, confirmations):
            lines += [sentence, ""]
        if sentence := proxy_sentence(correlation):
            lines += [sentence, ""]
    elif spec.select.seeds == 0 or spec.select.top_k == 1:
        lines += ["Confirmation: off ([select] seeds = 0 or top_k = 1): picks rest on the search's one seed.", ""]
    if cost is not None and cost.runs:
        bases = (
            f", plus {cost.bases} confirmation bases ({cost.base_flops:.3g} training MACs, trained once per spec)"
            if cost.bases
            else ""
        )
        lines += [
            f"Cost of the confirmation: {cost.runs} runs ({cost.trained} trained in this report, the rest found "
            f"again), {cost.train_flops:.3g} training MACs{bases}, {cost.seconds:.0f} s wall.",
            "",
        ]
    data = {
        "searched_epochs": epochs.to_dict(orient="records"),
        "picks": picks.to_dict(orient="records"),
        "confirmation": confirm.to_dict(orient="records"),
        "confirmation_cost": None if cost is None else vars(cost),
        "proxy": None if spec.proxy is None else {**spec.proxy.model_dump(), "correlation": correlation},
    }
    return lines, data
