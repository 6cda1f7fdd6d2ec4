"""The search of a spec as the later stages read it: its studies, its trunk (checked, never retrained)
and its run tree, with the spec run set RUNNING again and what a killed process left closed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from study.plan.layout import study_arms
from study.plan.spec import Spec, SpecError
from study.records.ownership import claim
from study.records.storage import is_shared, make_storage
from study.records.tracking import RunTree, configure

from .chance import chance_problem
from .reconcile import close_stale_runs
from .runner import RunOptions
from .studies import resolve_study_names, trial_counts
from .trunk import Trunk, build_trunk


@dataclass
class FinishedSearch:
    spec: Spec
    studies: dict[str, optuna.Study]  # study arm -> its study (only the studies that exist)
    names: dict[str, str]  # study arm -> study name (with the version suffix after --new-study)
    trunk: Trunk
    tree: RunTree
    root: str  # the spec run, RUNNING again for the stages that follow
    workdir: Path  # the spec's checkpoints
    caveats: list[str]  # what keeps a partial search from its budget


def shortfalls(spec: Spec, studies: dict[str, optuna.Study | None]) -> list[str]:
    """What keeps each study from its budget: n_trials searched trials plus its baselines."""
    out = []
    for arm, study in studies.items():
        if study is None:
            out.append(f"arm {arm}: no study yet ({spec.study.n_trials} trials short)")
            continue
        budget = spec.study.n_trials + len(study.user_attrs.get("baselines", {}))
        done, _, _ = trial_counts(study)
        if done == 0:
            out.append(f"arm {arm}: study {study.study_name} has no completed trial")
        elif done < budget:
            out.append(f"arm {arm}: {done}/{budget} trials, {budget - done} short")
    return out


def open_finished(spec: Spec, opts: RunOptions, partial: bool = False) -> FinishedSearch:
    """The spec's finished search; unfinished studies are refused unless `partial` (then they are caveats)."""
    claim(opts.storage, spec.name)  # no study process may add trials while the later stages read them
    storage = make_storage(opts.storage)
    names = resolve_study_names(spec, storage)  # the same studies the study command used
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    studies = {
        arm: optuna.load_study(study_name=names[arm], storage=storage) if names[arm] in existing else None
        for arm in study_arms(spec)
    }
    caveats = shortfalls(spec, studies)
    if caveats and not partial:
        raise SpecError(
            "studies are unfinished: " + "; ".join(caveats) + ". Run the spec again to finish them, "
            "or pass --partial to report what exists with this caveat"
        )
    configure(opts.tracking_uri)  # the tracking store is touched only once the report can be made
    tree = RunTree(spec.name)
    tags = {"rethink.spec": spec.name, "rethink.spec_digest": spec.digest()}
    root = tree.root(f"spec {spec.name}", tags, reopen=False)
    workdir = Path(opts.workdir) / spec.name
    trunk = build_trunk(spec, tree, root, workdir, opts.runtime, train_missing=False)  # checks the checkpoints
    tree.root(f"spec {spec.name}", tags)  # set RUNNING again for the final evaluation
    if not is_shared(opts.storage):
        close_stale_runs(tree, root)
    found = {a: s for a, s in studies.items() if s is not None}
    if trunk.base_trained and (
        problem := chance_problem(trunk.base_val_acc, len(trunk.split.y_eval), trunk.split.num_classes)
    ):
        caveats = [f"{problem}: read no verdict as evidence", *caveats]  # first, at the top of the report
    return FinishedSearch(spec, found, names, trunk, tree, root, workdir, caveats)
