"""The final evaluation of a finished search: each report row's pick, confirmed on more seeds, then every
pick on every final seed."""

from __future__ import annotations

from dataclasses import dataclass, field

from rethink.train import Runtime, TrainConfig
from study.records.cluster import Cluster
from study.search.base_file import weights_caveat
from study.search.finished import FinishedSearch

from .confirm import Confirmation, ConfirmCost, confirm_picks
from .evaluation import FinalResult, evaluate_choices
from .picks import Choice, Missing, choose


def claim2_choices(base: TrainConfig) -> list[Choice]:
    """Claim 2's protocol: the winning ticket and a random init of the same pruned structure, each with the
    base recipe (E epochs) at the base's lr and at lr/10, on every final seed."""
    out = []
    for name, lr in (("claim2@lr", base.lr), ("claim2@lr/10", base.lr / 10)):
        params = {"lr": lr, "schedule": base.schedule, "augment": base.augment, "epochs": base.epochs}
        for arm in ("lottery", "scratch-e"):
            how = "the winning ticket" if arm == "lottery" else "a random init of the same pruned structure"
            source = f"claim 2 protocol: {how}, the base recipe at lr {lr:g}, {base.epochs} epochs"
            out.append(Choice(arm, arm, name, params, None, None, source, (), "protocol"))
    return out


@dataclass
class FinalEvaluation:
    choices: list[Choice]
    missing: list[Missing]
    results: list[FinalResult]
    caveats: list[str] = field(default_factory=list)
    confirmations: list[Confirmation] = field(default_factory=list)
    confirm_cost: ConfirmCost | None = None


def evaluate_picks(search: FinishedSearch, runtime: Runtime, cluster: Cluster | None = None) -> FinalEvaluation:
    """The picks of every study, confirmed, then trained on every final seed (on `cluster` under Ray)."""
    spec = search.spec
    choices, missing = [], []
    for arm, study in search.studies.items():
        c, m = choose(study, arm, spec, search.trunk.caps_for(arm))
        choices += c
        missing += m
    choices, confirmations, cost = confirm_picks(search, choices, runtime, cluster)  # before any final run
    if "lottery" in spec.study.arms:
        choices += claim2_choices(search.trunk.base_config)
    results = evaluate_choices(
        choices,
        search.trunk,
        spec.final.seeds,
        search.tree,
        search.root,
        runtime,
        search.workdir,
        spec.final.share_base,
        cluster,
    )
    caveats = []
    if spec.weights:
        caveats.append(weights_caveat(spec))
    elif spec.final.share_base:
        caveats.append("one base served every seed (final.share_base): fine-tune's seed spread excludes the base's")
    return FinalEvaluation(choices, missing, results, caveats, confirmations, cost)
