"""`rethink report`: final evaluation of each arm's chosen configs, then the report and its verdicts."""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .final import choose, evaluate_choices
from .report import claims, figures, importances, results_table, tuning_gaps, write_report
from .runner import RunOptions, study_name
from .runtime_options import add_runtime_args, runtime_from_args
from .spec import Spec, SpecError, load_spec
from .storage import make_storage
from .tracking import RunTree, configure
from .trunk import build_trunk


def shortfalls(spec: Spec, studies: dict[str, optuna.Study | None]) -> list[str]:
    out = []
    for arm, study in studies.items():
        if study is None:
            out.append(f"arm {arm}: no study yet ({spec.study.n_trials} trials short)")
            continue
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        if done == 0:
            out.append(f"arm {arm}: study {study.study_name} has no completed trial")
        elif done < spec.study.n_trials:
            out.append(f"arm {arm}: {done}/{spec.study.n_trials} trials, {spec.study.n_trials - done} short")
    return out


def report_spec(spec: Spec, opts: RunOptions, out_dir: Path, partial: bool = False, margin: float = 0.005) -> Path:
    storage = make_storage(opts.storage)
    configure(opts.tracking_uri)
    tree = RunTree(spec.name)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    studies = {
        arm: optuna.load_study(study_name=study_name(spec, arm), storage=storage)
        if study_name(spec, arm) in names
        else None
        for arm in spec.study.arms
    }
    caveats = shortfalls(spec, studies)
    if caveats and not partial:
        raise SpecError(
            "studies are unfinished: " + "; ".join(caveats) + ". Run the spec again to finish them, "
            "or pass --partial to report what exists with this caveat"
        )
    studies = {a: s for a, s in studies.items() if s is not None}
    root = tree.root(f"spec {spec.name}", {"rethink.spec": spec.name, "rethink.spec_digest": spec.digest()})
    runtime = opts.runtime
    trunk = build_trunk(spec, tree, root, Path(opts.workdir) / spec.name, runtime, train_missing=False)
    pareto = spec.study.mode == "pareto"
    choices = [c for arm, study in studies.items() for c in choose(study, arm, trunk, pareto)]
    results = evaluate_choices(choices, trunk, spec.final.seeds, tree, root, runtime)

    table = results_table(results)
    gaps = tuning_gaps(results)
    verdicts = claims(results, margin, pareto)
    imp = importances(studies)
    curves = {}
    for c in choices:
        study = studies[c.arm]
        run_id = study.trials[c.trial].user_attrs.get("mlflow_run_id") if c.trial is not None else None
        if run_id and c.name in ("best", "paper", "literature"):
            hist = tree.client.get_metric_history(run_id, "val_acc")
            curves[f"{c.arm}:{c.name}"] = {"val_acc": [m.value for m in sorted(hist, key=lambda m: m.step)]}
    reduction = 1 - trunk.pruned_flops / trunk.base_flops
    header = {
        "spec": spec.name,
        "description": spec.description,
        "dataset": spec.dataset,
        "model": spec.model,
        "method": f"{spec.prune.method} {spec.prune.variant or spec.prune.ratio}",
        "flops_reduction": f"{100 * reduction:.1f}%",
        "seeds": spec.final.seeds,
        "trials_per_arm": spec.study.n_trials,
        "mode": spec.study.mode,
        "spec_digest": spec.digest(),
    }
    out = out_dir / spec.name
    paths = write_report(out, table, gaps, verdicts, imp, header, caveats)
    pngs = figures(studies, curves, out)
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
    print(
        f"\n{spec.name}: test accuracy (%), mean ± std over {spec.final.seeds} seeds"
        + (" [PARTIAL: " + "; ".join(caveats) + "]" if caveats else "")
    )
    print(table[["arm", "choice", "test_acc", "seeds", "epochs", "lr", "augment"]].to_string(index=False))
    for v in verdicts:
        print(f"claim {v['claim']}: {v['verdict']}")
    print(f"report: {out.resolve()} (report.md, table.csv, verdict.json, figures); MLflow run {report_run}")
    return out


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default="quick")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--storage", default="sqlite:///optuna.db")
    p.add_argument("--workdir", default="runs")
    p.add_argument("--out", default="reports", help="report folder (a subfolder per spec)")
    add_runtime_args(p)
    p.add_argument("--partial", action="store_true", help="report unfinished studies, with the caveat printed")
    p.add_argument("--margin", type=float, default=0.005, help="non-inferiority margin (accuracy fraction)")
    p.add_argument("--tracking-uri", default=None)


def run_report(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set)
    opts = RunOptions(args.storage, args.tracking_uri, Path(args.workdir), runtime_from_args(args))
    report_spec(spec, opts, Path(args.out), args.partial, args.margin)
    return 0
