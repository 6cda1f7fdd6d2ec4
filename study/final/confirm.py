"""Picks confirmed on more seeds and bases: each tuned pick's candidates (its study's top trials) train
again on the spec's `[select] seeds` confirmation seeds, on the search's own train/validation split, and the
row's pick becomes the candidate with the best mean validation accuracy over its search run and these.
Arms that inherit a base (fine-tune, lottery, the random control) vary what the final evaluation varies:
confirmation seed i fine-tunes from confirmation base i mod `[select] bases` (bases trained on the search
split with seeds of their own, pruned by the spec's method), and the mean is taken over bases, so a recipe
that suits the search's one base does not win on that base's luck. Scratch arms vary their init seed.
Each confirmation run is an MLflow run under its study's arm run (kind `confirm`), found again by digest."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import optuna

from rethink.arms import INHERITING_ARMS, confirm_base_seeds, confirm_seeds, default_recipe
from rethink.train import History, Runtime, config_digest
from study.plan.layout import arm_of
from study.plan.space import apply
from study.records.cluster import Cluster
from study.search.finished import FinishedSearch

from .bases import CONFIRM, SeedBase, finished_run, train_bases
from .dispatch import train_runs
from .evaluation import run_arm
from .groups import Pending, Score
from .picks import Choice


@dataclass(frozen=True)
class Candidate:
    trial: int
    kind: str  # searched, or baseline:NAME
    params: dict
    val_accs: tuple[float, ...]  # the search run's, then one per confirmation seed (nan: it diverged)
    bases: tuple[int, ...] = ()  # the seed of the base each run fine-tuned from (inheriting arms), else ()
    proxy_acc: float = math.nan  # with a proxy: the search run's (proxy) score, left out of val_accs

    @property
    def mean(self) -> float:
        """The mean over bases (each base's runs averaged first); over runs where no base is inherited."""
        if not self.bases:
            return float(np.mean(self.val_accs))
        groups: dict[int, list[float]] = {}
        for base, acc in zip(self.bases, self.val_accs, strict=True):
            groups.setdefault(base, []).append(acc)
        return float(np.mean([np.mean(g) for g in groups.values()]))

    @property
    def std(self) -> float:
        return float(np.std(self.val_accs, ddof=1)) if len(self.val_accs) > 1 else math.nan


@dataclass(frozen=True)
class Confirmation:
    """How one tuned pick was confirmed: its candidates, best search trial first, and the one chosen."""

    arm: str
    name: str
    study_arm: str
    candidates: tuple[Candidate, ...]
    chosen: int  # the trial picked
    n_bases: int = 1  # the bases its runs fine-tuned from (1 for arms that inherit none: the search's trunk)


@dataclass(frozen=True)
class ConfirmCost:
    runs: int  # confirmation runs this pick set needs
    trained: int  # of them trained now (the rest were found again)
    train_flops: float  # MACs of all of them, on the search's training split
    seconds: float  # wall time of this stage in this process
    bases: int = 0  # confirmation bases the inheriting arms fine-tuned from (besides the search's)
    base_flops: float = 0.0  # their training MACs (trained once per spec, found again by digest)


def best_candidate(candidates: list[Candidate]) -> Candidate:
    """The best mean validation accuracy; one that diverged on a seed (nan) never wins, and a tie goes to
    the candidate ranked first (the better search score)."""
    return max(candidates, key=lambda c: -math.inf if math.isnan(c.mean) else c.mean)


def _kind(t: optuna.trial.FrozenTrial) -> str:
    return f"baseline:{t.user_attrs['baseline']}" if t.user_attrs.get("baseline") else "searched"


def confirm_picks(
    search: FinishedSearch, choices: list[Choice], runtime: Runtime, cluster: Cluster | None = None
) -> tuple[list[Choice], list[Confirmation], ConfirmCost]:
    """Confirm every tuned pick that has two or more candidates; return the picks (tuned ones replaced by
    their best-mean candidate), how each was confirmed, and the stage's cost."""
    start = time.perf_counter()
    spec, trunk, tree = search.spec, search.trunk, search.tree
    seeds = confirm_seeds(spec.seed, spec.select.seeds)
    setting = config_digest(spec.study_fields())
    todo = [c for c in choices if len(c.candidates) > 1 and seeds]
    bases = _bases(search, todo, runtime, cluster)
    base_seeds = list(bases)
    needed: set[str] = set()  # the digests of the confirmation runs this pick set needs
    runs: dict[tuple[str, int, int], str] = {}  # (study_arm, trial, seed index) -> digest
    pending: list[Pending] = []
    order: list[str] = []
    found: dict[str, tuple[float, float]] = {}  # digest -> (val acc, train flops)
    arms = {}
    for c in todo:
        study = search.studies[c.study_arm]
        arm_run = study.user_attrs.get("mlflow_arm_run_id") or search.root
        arm = arm_of(c.study_arm)
        recipe = default_recipe(arm, trunk.base_config, trunk.base_flops, trunk.pruned_flops)
        for number in c.candidates:
            t = study.trials[number]
            for i, seed in enumerate(seeds):
                base = _base_for(arm, i, bases, base_seeds)
                config = apply(t.params, replace(recipe, seed=seed))
                key = {"confirm": setting, "arm": run_arm(c.study_arm), "config": config.to_dict()}
                if base is not None:
                    key["base"] = base.digest
                digest = config_digest(key)
                runs[(c.study_arm, number, i)] = digest
                if digest in needed:
                    continue
                needed.add(digest)
                run_id, metrics = finished_run(tree, digest, arm_run, kind="confirm", metric="val_acc")
                if run_id:
                    found[digest] = (metrics["val_acc"], metrics.get("train_flops", math.nan))
                    continue
                built = trunk.build(arm, seed, base)
                arms[digest] = built
                tags = {
                    "arm": arm,
                    "optuna.study_name": study.study_name,
                    "optuna.trial_number": number,
                    "rethink.trial_kind": "confirmation",
                    "seed": seed,
                    "rethink.digest": digest,
                    "rethink.spec_digest": spec.digest(),
                }
                if base is not None:
                    tags |= {"rethink.base_run": base.run_id, "base_seed": base.seed}
                else:
                    tags["base_seed"] = spec.seed if arm in INHERITING_ARMS else ""
                params = {f"train.{k}": v for k, v in config.to_dict().items()} | {"trial": number}
                name = f"confirm:{c.study_arm}:trial{number}:seed{i + 1}"
                label = f"{c.study_arm} trial {number} seed {i + 1}"
                pending.append(Pending(name, tags, params, built.model, config, label, list(built.callbacks), arm_run))
                order.append(digest)

    score = Score(tuple(float(arms[d].forward_macs) for d in order), None, "val_acc")
    if pending:
        heading = f"[confirm] top {spec.select.top_k} trials of each study × {len(seeds)} more seeds"
        _, outcomes = train_runs(
            pending, trunk.split, tree, search.root, runtime, score, heading, "confirm", False, cluster
        )
        for k, outcome in enumerate(outcomes):
            if isinstance(outcome, History):
                found[order[k]] = (outcome.final.eval_acc, score(k, outcome)["train_flops"])
            else:  # it diverged on this seed: the candidate cannot be the pick
                found[order[k]] = (math.nan, math.nan)
    confirmed, out = [], []
    for c in choices:
        if c not in todo:
            confirmed.append(c)
            continue
        study = search.studies[c.study_arm]
        arm = arm_of(c.study_arm)
        inherits = arm in INHERITING_ARMS
        others = (_base_for(arm, i, bases, base_seeds) for i in range(len(seeds)))
        used = (spec.seed, *(spec.seed if b is None else b.seed for b in others))  # the base of each run
        proxy = spec.proxy is not None  # the search run scored the proxy: only full-scale runs are averaged
        used = used[1:] if proxy else used
        cands = []
        for number in c.candidates:
            t = study.trials[number]
            full = tuple(found[runs[(c.study_arm, number, i)]][0] for i in range(len(seeds)))
            accs = full if proxy else (t.values[0], *full)
            extra = {"proxy_acc": t.values[0]} if proxy else {}
            cands.append(Candidate(number, _kind(t), dict(t.params), accs, used if inherits else (), **extra))
        best = best_candidate(cands)
        n_bases = len(set(used)) if inherits else 1
        out.append(Confirmation(c.arm, c.name, c.study_arm, tuple(cands), best.trial, n_bases))
        over = f"{len(seeds) + (not proxy)} seeds" + (f" and {n_bases} bases" if inherits else "")
        over += " at full scale (the search ran on the proxy)" if proxy else ""
        how = f"{c.source}; confirmed: best mean validation accuracy over {over} of its top {len(cands)} trials"
        kind = "baseline" if best.kind.startswith("baseline") else "searched"
        confirmed.append(replace(c, params=best.params, trial=best.trial, val_acc=best.mean, source=how, kind=kind))
    flops = sum(v[1] for v in found.values() if not math.isnan(v[1]))
    base_flops = sum(b.inherited for b in bases.values())
    cost = ConfirmCost(len(needed), len(pending), flops, time.perf_counter() - start, len(bases), base_flops)
    return confirmed, out, cost


def _bases(search: FinishedSearch, todo: list[Choice], runtime: Runtime, cluster: Cluster | None):
    """The confirmation bases, trained (or found again) only when a pick to confirm inherits a base."""
    spec = search.spec
    if not spec.select.n_bases or not any(arm_of(c.study_arm) in INHERITING_ARMS for c in todo):
        return {}
    seeds = confirm_base_seeds(spec.seed, spec.select.n_bases)
    t = search.trunk
    return train_bases(t, seeds, t.split, search.tree, search.root, runtime, search.workdir, cluster, CONFIRM)


def _base_for(arm: str, i: int, bases: dict[int, SeedBase], seeds: list[int]) -> SeedBase | None:
    """The base confirmation seed i fine-tunes from: confirmation base i mod their number; None (the search's
    own trunk) for arms that inherit no base, or when the spec confirms on no other base."""
    if arm not in INHERITING_ARMS or not seeds:
        return None
    return bases[seeds[i % len(seeds)]]
