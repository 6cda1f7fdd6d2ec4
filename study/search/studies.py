"""The Optuna studies of a spec: their names (checked before any training), creation with what made them,
the baselines enqueued on top of the searched trials, and what counts toward a study's budget."""

from __future__ import annotations

import json
import re
import time

import mlflow
import optuna
from optuna.trial import TrialState

from study.plan.layout import LAYOUT, baseline_trials, rows_of, study_arms, study_name
from study.plan.spec import Spec, SpecError
from study.records.storage import MAX_RETRIES

from .trunk import Trunk

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
ATTEMPTS_PER_TRIAL = 3  # failed (e.g. diverged) trials are replaced, up to this many attempts per budgeted trial


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    s = spec.study
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    # Optuna 5: TPE is multivariate for one objective; constant_liar keeps parallel workers apart.
    return optuna.samplers.TPESampler(seed=s.seed, constant_liar=True, n_startup_trials=max(2, s.n_trials // 4))


PROGRESS_STEPS = 100  # a proxy trial reports at its percent of its own schedule (see ReportToOptuna)


def make_hpo_pruner(spec: Spec, epochs: int) -> optuna.pruners.BasePruner:
    if spec.proxy is not None and spec.study.mode == "capped" and spec.study.hpo_pruner != "none":
        # proxy trials of different lengths are compared at the same share of their own schedules (their lr
        # decays at the same fractions), so successive halving does not stop long runs for being long
        if spec.study.hpo_pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=PROGRESS_STEPS // 10)
        return optuna.pruners.HyperbandPruner(min_resource=PROGRESS_STEPS // 10, max_resource=PROGRESS_STEPS)
    if spec.study.mode != "fixed-budget" or spec.study.hpo_pruner == "none":
        # pareto: multi-objective trials cannot be pruned. capped: trials of different lengths decay their
        # lr at different epochs, so comparing them at one epoch would stop long runs for being long.
        return optuna.pruners.NopPruner()
    if spec.study.hpo_pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)


def diff_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_fields(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def resolve_study_names(spec: Spec, storage, new_study: bool = False) -> dict[str, str]:
    """The study of each arm that matches this spec, checked before any training: an existing study made
    from other spec fields (or an older layout) is refused, or with --new-study a fresh `.vN` is named.
    A `.vN` made earlier for exactly this spec is found again, so the report and `best` use the same ones."""
    fields = json.loads(json.dumps(spec.study_fields()))
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    names = {}
    if spec.study.mode == "pareto" and not new_study:
        old = [study_name(spec, a) for a in ("scratch-e", "scratch-b") if study_name(spec, a) in existing]
        old = [n for n in old if existing[n].user_attrs.get("layout") != LAYOUT]
        if old:
            raise SpecError(
                f"the storage holds studies of an older layout for spec {spec.name!r} ({', '.join(old)}); pareto "
                f"mode now searches Scratch-E and Scratch-B in one study {study_name(spec, 'scratch')!r}. Use "
                f"another storage (--storage sqlite:///new.db), another name (--set name={spec.name}-v2), or "
                f"pass --new-study to start the new layout beside them"
            )
    for arm in study_arms(spec):
        base = study_name(spec, arm)
        chain = [base] + [f"{base}.v{n}" for n in range(2, 1000) if f"{base}.v{n}" in existing]
        matching = [n for n in chain if n in existing and _same(existing[n].user_attrs, fields)]
        if matching:
            names[arm] = matching[-1]
        elif base not in existing:
            names[arm] = base
        elif new_study:
            n = 2
            while f"{base}.v{n}" in existing:
                n += 1
            names[arm] = f"{base}.v{n}"
        else:
            attrs = existing[base].user_attrs
            if attrs.get("layout") != LAYOUT:
                why = "an older layout of rethink (before searched schedules and baselines on top of n_trials)"
            else:
                why = "a different spec (" + "; ".join(diff_fields(attrs.get("spec_fields", {}), fields)) + ")"
            raise SpecError(
                f"study {base!r} was created from {why}; a new setting wants its own name: "
                f"--set name={suggested_name(spec, attrs.get('spec_fields', {}))} (or pass --new-study to start "
                f"fresh studies beside these, or restore the spec)"
            )
    return names


def suggested_name(spec: Spec, old_fields: dict) -> str:
    """A name for a changed setting, from what changed most visibly: the dataset, else the model."""
    if old_fields.get("dataset") not in (None, spec.dataset):
        hint = spec.dataset.removeprefix("npz:").rsplit("/", 1)[-1].removesuffix(".npz")
    elif old_fields.get("model") not in (None, spec.model):
        hint = spec.model
    else:
        hint = "2"
    return f"{spec.name}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', hint)}"


def _same(attrs: dict, fields: dict) -> bool:
    return attrs.get("layout") == LAYOUT and attrs.get("spec_fields") == fields


def open_study(spec: Spec, arm: str, name: str, storage, epochs: int) -> optuna.Study:
    """Create or load the arm's study (its name from resolve_study_names) and record what made it."""
    directions = ["maximize", "minimize"] if spec.study.mode == "pareto" else ["maximize"]
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,
        load_if_exists=True,
        sampler=make_sampler(spec),
        pruner=make_hpo_pruner(spec, epochs),
    )
    if "spec_fields" not in study.user_attrs:
        objectives = ["val_acc"] if len(directions) == 1 else ["val_acc", "train_flops"]
        study.set_metric_names(objectives)
        for key, value in {
            "spec_fields": json.loads(json.dumps(spec.study_fields())),
            "layout": LAYOUT,
            "spec": spec.name,
            "arm": arm,
            "rows": rows_of(spec, arm),
            "spec_digest": spec.digest(),
            "n_trials": spec.study.n_trials,
            "verdict": spec.verdict.model_dump(mode="json"),  # the pre-registered analysis, fixed at creation
            "sampler": {
                "name": spec.study.sampler,
                "seed": spec.study.seed,
                "constant_liar": True,
                "multivariate": "optuna default",
            },
            "objectives": objectives,
            "versions": {
                "optuna": optuna.__version__,
                "mlflow": mlflow.__version__,
                "torch": __import__("torch").__version__,
            },
        }.items():
            study.set_user_attr(key, value)
    return study


def enqueue_baselines(study: optuna.Study, spec: Spec, arm: str, trunk: Trunk) -> int:
    """The study's baselines, enqueued once on top of its searched trials; returns how many it has."""
    if "baselines" in study.user_attrs:
        return len(study.user_attrs["baselines"])
    trials = baseline_trials(spec, arm, trunk.caps_for(arm), trunk.base_config)
    for b in trials:
        attrs = {"baseline": b.name, "baseline_source": b.source} | ({"baseline_row": b.row} if b.row else {})
        study.enqueue_trial(b.params, user_attrs=attrs)
    study.set_user_attr("baselines", {b.name: b.source for b in trials})
    return len(trials)


def settled(t: optuna.trial.FrozenTrial) -> bool:
    """Counts toward the budget: finished, or a baseline that failed for good (it diverged). A failed
    searched trial is replaced by a new one; a baseline that failed otherwise is enqueued again."""
    diverged_baseline = t.user_attrs.get("baseline") and t.user_attrs.get("failed_for_good")
    return t.state in DONE or (t.state == TrialState.FAIL and bool(diverged_baseline))


def trial_counts(study: optuna.Study) -> tuple[int, int, int]:
    return counts_of(study.get_trials(deepcopy=False))


def counts_of(trials: list[optuna.trial.FrozenTrial]) -> tuple[int, int, int]:
    """Trials settled (toward the budget), running, and in all."""
    done = sum(settled(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running, len(trials)


RETRY_WAIT_S = 30.0  # how long a worker waits for a stale trial's retry to appear before it samples afresh


def retries_due(trials: list[optuna.trial.FrozenTrial], seen: dict[int, float], now: float | None = None) -> int:
    """Trials that a stale heartbeat failed and whose retry is not enqueued yet. Optuna fails such a trial first
    and runs the callback that enqueues its retry after, so for a moment it is neither running nor retried: a
    worker counting the budget then must wait for the retry, or a freshly sampled trial takes its place and the
    retry is left waiting. `seen` holds when this worker first saw each one (its own clock): after
    RETRY_WAIT_S it stops waiting (the process that failed the trial died before it enqueued the retry)."""
    now = time.monotonic() if now is None else now
    retried = {t.user_attrs.get("retried_from") for t in trials}
    due = [
        t.number
        for t in trials
        if t.state == TrialState.FAIL
        and "fail_reason" not in t.user_attrs  # every failure seen by a live process records its reason
        and int(t.user_attrs.get("retry_count", 0)) < MAX_RETRIES
        and t.number not in retried
    ]
    return sum(now - seen.setdefault(n, now) < RETRY_WAIT_S for n in due)


def next_move(study: optuna.Study, budget: int, seen: dict[int, float]) -> str:
    """What a worker does next for a study of `budget` trials: "done", "give up" (too many failed attempts),
    "wait" (other workers run the last trials, or a dead worker's retry is due) or "run" a trial."""
    trials = study.get_trials(deepcopy=False)  # one read of the storage per decision
    done, running, total = counts_of(trials)
    if done >= budget:
        return "done"
    if total >= budget * ATTEMPTS_PER_TRIAL:
        return "give up"
    return "wait" if done + running + retries_due(trials, seen) >= budget else "run"


def searched_done(study: optuna.Study) -> int:
    return sum(t.state in DONE and not t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False))
