"""`rethink report`: final evaluation of each arm's chosen configs, then the report and its verdicts."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

import optuna
from optuna.trial import TrialState

from study.final.evaluation import evaluate_choices
from study.final.picks import choose
from study.plan.layout import study_arms, study_name
from study.plan.spec import Spec, SpecError, load_spec
from study.records.ownership import claim
from study.records.storage import is_shared, make_storage, storage_url
from study.records.tracking import RunTree, configure
from study.search.reconcile import close_stale_runs
from study.search.runner import RunOptions
from study.search.studies import resolve_study_names, trial_counts
from study.search.trunk import Trunk, build_trunk
from study.verdict.claims import Analysis, claims, lr_bands, tuning_gaps
from study.verdict.figures import figures, lr_sensitivity_figure
from study.verdict.report_files import importances, results_table, write_report
from study.verdict.report_html import write_html
from study.verdict.tradeoff import tradeoff_report

from .options import add_runtime_args, runtime_from_args


def report_folder(spec: Spec, names: dict[str, str]) -> str:
    """The spec's name, plus the studies' version suffix (`.v2` after --new-study), so reports of
    different settings never overwrite each other."""
    arm = next(iter(names))
    return spec.name + names[arm].removeprefix(study_name(spec, arm))


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


def method_notes(spec: Spec, trunk: Trunk) -> list[str]:
    """What a reader needs to judge the comparison: budgets, data, seeds, and what each row is."""
    c = trunk.budgets
    unpruned_tuned = "unpruned" in spec.study.arms
    notes = [
        f"every study searched {spec.study.n_trials} sampled trials from the same space (lr, schedule "
        f"{list(spec.space.schedule)}, augmentation, epochs{', weight decay' if spec.space.weight_decay else ''}"
        f"{', batch size' if spec.space.batch_size else ''}); named baselines were run on top, each with its source",
        f"budgets (MACs): E = {c.train_e:.3g} (E = {c.epochs_e} epochs of the pruned model), B = {c.train_b:.3g} "
        f"(the base's training; Scratch-B = {c.epochs_b} epochs), P = {c.pipeline_p:.3g} (pipeline account: "
        f"the base's training plus E epochs of the pruned model)",
        "two compute accounts: train_flops (the run itself) and pipeline_flops (plus the base training it "
        "inherits, for fine-tune and lottery; scratch inherits nothing)",
        "final evaluation: for each seed the base is trained on train+validation with that seed, pruned, and "
        "fine-tuned from; scratch runs train on train+validation with the same seed; the test set is scored "
        "once per run",
        "scratch inits come from a seed stream of their own, never the base's (so never the lottery ticket)",
        "the unpruned 'paper' row is the untuned paper recipe"
        + (" (the tuned large model is its 'best' row)" if unpruned_tuned else "; the arms below it were tuned"),
    ]
    if "finetune-random" in spec.study.arms:
        notes.append(
            "control: `finetune-random` fine-tunes randomly selected channels (or weights) at the method's "
            "per-layer widths (counts), tuned with the same space and budget as `finetune`"
        )
    if spec.study.mode == "pareto":
        notes.append(
            "Scratch-E and Scratch-B are one `scratch` study; their rows are its best trial within budget E "
            "and within budget B (and P under the pipeline account)"
        )
    return notes


def analysis_for(spec: Spec, studies: dict[str, optuna.Study], margin: float | None, confidence: float | None):
    """The spec's pre-registered [verdict], or a post-hoc analysis when the report overrides it or the spec's
    table differs from the one recorded in the studies when they were made."""
    v = spec.verdict
    why = []
    recorded = {json.dumps(s.user_attrs.get("verdict"), sort_keys=True) for s in studies.values()}
    if recorded != {json.dumps(v.model_dump(mode="json"), sort_keys=True)}:
        why.append("the spec's [verdict] table differs from the one recorded when the studies were made")
    if margin is not None and margin != v.margin:
        why.append(f"--margin {margin} pp chosen at report time (pre-registered: {v.margin} pp)")
    if confidence is not None and confidence != v.confidence:
        why.append(f"--confidence {confidence} chosen at report time (pre-registered: {v.confidence})")
    m = v.margin if margin is None else margin
    return Analysis(m / 100, v.confidence if confidence is None else confidence, v.budgets, tuple(why))


def trial_points(studies: dict[str, optuna.Study]) -> dict[str, list[tuple[float, float]]]:
    """(lr, validation accuracy) of every completed trial, per study."""
    return {
        arm: [(t.params["lr"], t.values[0]) for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        for arm, s in studies.items()
    }


def report_spec(
    spec: Spec,
    opts: RunOptions,
    out_dir: Path,
    partial: bool = False,
    margin: float | None = None,
    confidence: float | None = None,
) -> Path:
    claim(opts.storage, spec.name)  # no study process may add trials while the report reads them
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
    studies = {a: s for a, s in studies.items() if s is not None}
    configure(opts.tracking_uri)  # the tracking store is touched only once the report can be made
    tree = RunTree(spec.name)
    tags = {"rethink.spec": spec.name, "rethink.spec_digest": spec.digest()}
    root = tree.root(f"spec {spec.name}", tags, reopen=False)
    runtime = opts.runtime
    workdir = Path(opts.workdir) / spec.name
    trunk = build_trunk(spec, tree, root, workdir, runtime, train_missing=False)  # checks the checkpoints
    tree.root(f"spec {spec.name}", tags)  # set RUNNING again for the final evaluation
    if not is_shared(opts.storage):
        close_stale_runs(tree, root)
    pareto = spec.study.mode == "pareto"
    choices, missing = [], []
    for arm, study in studies.items():
        c, m = choose(study, arm, spec, trunk.budgets)
        choices += c
        missing += m
    results = evaluate_choices(choices, trunk, spec.final.seeds, tree, root, runtime, workdir, spec.final.share_base)
    if spec.final.share_base:
        caveats.append("one base served every seed (final.share_base): fine-tune's seed spread excludes the base's")
    recipes = {(c.arm, c.name): c.source for c in choices} | {("unpruned", "paper"): "the paper recipe, untuned"}
    table = results_table(results, recipes)
    analysis = analysis_for(spec, studies, margin, confidence)
    gaps = tuning_gaps(results, pareto)
    points = trial_points(studies)
    bands = lr_bands(points, spec.space.lr.low, spec.space.lr.high) if "lottery" in studies else []
    verdicts = claims(results, analysis, pareto, bands)
    imp = importances(studies)
    curves = {}
    for c in choices:
        study = studies[c.study_arm]
        run_id = study.trials[c.trial].user_attrs.get("mlflow_run_id") if c.trial is not None else None
        key = f"{c.arm}:{c.name}"
        if run_id and key not in curves and c.name in ("best@E", "best@B", "best", "paper", "literature", "rewind"):
            hist = tree.client.get_metric_history(run_id, "val_acc")
            curves[key] = {"val_acc": [m.value for m in sorted(hist, key=lambda m: m.step)]}
    reduction = 1 - trunk.pruned_flops / trunk.base_flops
    header = {
        "spec": spec.name,
        "description": spec.description,
        "dataset": spec.dataset,
        "model": spec.model,
        "method": f"{spec.prune.method} {spec.prune.variant or spec.prune.ratio}",
        "flops_reduction": f"{100 * reduction:.1f}%",
        "seeds": spec.final.seeds,
        "searched_trials_per_study": spec.study.n_trials,
        "studies": ", ".join(s.study_name for s in studies.values()),
        "mode": spec.study.mode,
        "analysis": analysis.describe(),
        "budgets_macs": {"E": trunk.budgets.train_e, "B": trunk.budgets.train_b, "P": trunk.budgets.pipeline_p},
        "spec_digest": spec.digest(),
    }
    out = out_dir / report_folder(spec, names)
    notes = method_notes(spec, trunk)
    paths = write_report(out, table, gaps, verdicts, imp, header, caveats, notes, [asdict(m) for m in missing])
    c = trunk.budgets
    pngs = figures(studies, curves, out, {"E": c.train_e, "B": c.train_b, "P": c.pipeline_p})
    pngs.append(lr_sensitivity_figure(points, out))
    paths["html"] = write_html(out, paths["report"].read_text(), pngs, f"rethink report: {spec.name}")
    report_run = tree.child(root, "report", "report", {"rethink.spec_digest": spec.digest()}, reuse=False)
    for p in [*paths.values(), *pngs, *out.glob("*.csv")]:
        tree.client.log_artifact(report_run, str(p))
    tree.log_metrics(
        report_run,
        {
            f"{r['arm']}.{r['choice'].replace('@', '_at_')}.test_acc_mean": r["test_acc_mean"]
            for r in table.to_dict(orient="records")
        },
    )
    tree.end(report_run)
    if not os.environ.get("MLFLOW_RUN_ID"):  # the project run of `mlflow run` is ended by MLflow
        tree.end(root)
    print(
        f"\n{spec.name}: test accuracy (%), mean ± std over {spec.final.seeds} seeds"
        + (" [PARTIAL: " + "; ".join(caveats) + "]" if caveats else "")
    )
    print(table[["arm", "choice", "test_acc", "seeds", "epochs", "lr", "schedule", "augment"]].to_string(index=False))
    for m in missing:
        print(f"missing: {m.arm} {m.name}: {m.why}")
    for v in verdicts:
        print(f"claim {v['claim']}: {v['verdict']}")
    print(f"report: {(out / 'report.html').resolve()} (and report.md, table.csv, verdict.json, figures)")
    print(f"MLflow: run {report_run}, artifacts tab (report.html)")
    return out


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default="quick", help="a spec TOML path or a shipped name")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec field, as for `rethink study`"
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage (default: env RETHINK_STORAGE, else sqlite:///optuna.db)"
    )
    p.add_argument("--workdir", default="runs", help="folder of the spec's checkpoints (as given to `rethink study`)")
    p.add_argument("--out", default="reports", help="report folder (a subfolder per spec)")
    add_runtime_args(p)
    p.add_argument("--partial", action="store_true", help="report unfinished studies, with the caveat printed")
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="non-inferiority margin in accuracy points; overriding the spec's [verdict] makes the analysis post hoc",
    )
    p.add_argument("--confidence", type=float, default=None, help="confidence level; an override is post hoc")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: env, else sqlite:///mlflow.db)")


def run_report(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set)
    opts = RunOptions(storage_url(args.storage), args.tracking_uri, Path(args.workdir), runtime_from_args(args))
    if args.margin is not None and not 0 <= args.margin < 100:
        raise SpecError(f"--margin {args.margin}: expected accuracy points in [0, 100), e.g. --margin 0.5")
    if args.confidence is not None and not 0.5 < args.confidence < 1:
        raise SpecError(f"--confidence {args.confidence}: expected a level in (0.5, 1), e.g. 0.95")
    levels = spec.levels()
    for level in levels:
        report_spec(level, opts, Path(args.out), args.partial, args.margin, args.confidence)
    if len(levels) > 1:
        tradeoff_report(spec, Path(args.out))
    return 0
