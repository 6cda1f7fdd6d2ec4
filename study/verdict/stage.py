"""The verdicts and report files of a spec, from its finished search and its final evaluation: the table,
tuning gaps, claims under the spec's pre-registered analysis (post hoc where the report overrides it),
figures, report.md/html, and the `report` run that holds them. It ends the spec run."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from rethink.flops import param_count
from rethink.models.registry import build_model
from rethink.prune import round_share
from study.final.picks import Missing
from study.final.stage import FinalEvaluation
from study.plan.layout import arm_of, cap_of, study_name
from study.plan.paper import published, row_key
from study.plan.spec import Spec
from study.search.finished import FinishedSearch
from study.search.trunk import Trunk

from .analysis import analyse
from .architectures import ARCH_FIGURE, EFFICIENCY_FIGURE, architecture_section
from .carryover import BUDGET_NOTE, carryover_section
from .claims import Analysis, lr_bands, tuning_gaps
from .external import external_claims
from .figures import figures, lr_sensitivity_figure
from .report_files import VERDICT_PNG, importances, results_table, write_report
from .report_html import write_html
from .runs_table import runs_frame
from .selection import selection_section
from .verdict_figure import verdict_figure


@dataclass
class Report:
    out: Path  # the report folder
    table: pd.DataFrame
    verdicts: list[dict]
    missing: list[Missing]
    caveats: list[str]
    run_id: str  # the `report` run
    primary: str = ""  # the primary verdict in one plain sentence
    root_run: str = ""  # the spec's run, which holds report.html too


def report_folder(spec: Spec, names: dict[str, str]) -> str:
    """The spec's name, plus the studies' version suffix (`.v2` after --new-study), so reports of
    different settings never overwrite each other."""
    arm = next(iter(names))
    return spec.name + names[arm].removeprefix(study_name(spec, arm))


def method_notes(spec: Spec, trunk: Trunk) -> list[str]:
    """What a reader needs to judge the comparison: budgets, data, seeds, and what each row is."""
    c = trunk.budgets
    unpruned_tuned = "unpruned" in spec.study.arms
    rounds = spec.prune.rounds
    rounds_phrase = (
        f", the {rounds - 1} retraining rounds of iterative pruning ({c.prune_train:.3g} MACs, "
        f"{c.epochs_prune} epochs of the pruned model)"
        if rounds > 1
        else ""
    )
    notes = [
        f"every study searched {spec.study.n_trials} sampled trials from the same space (lr, schedule "
        f"{list(spec.space.schedule)}, augmentation, epochs{', weight decay' if spec.space.weight_decay else ''}"
        f"{', batch size' if spec.space.batch_size else ''}); named baselines were run on top, each with its source",
        f"budgets (MACs): E = {c.train_e:.3g} (E = {c.epochs_e} epochs of the pruned model), B = {c.train_b:.3g} "
        f"(the base's training; Scratch-B = {c.epochs_b} epochs), P = {c.pipeline_p:.3g} (pipeline account: "
        f"the base's training{rounds_phrase} plus E epochs of the pruned model)",
        "two compute accounts: train_flops (the run itself) and pipeline_flops (plus the base training it "
        f"inherits{rounds_phrase}, for fine-tune and lottery; scratch inherits nothing)",
        "final evaluation: for each seed the base is trained on train+validation with that seed, pruned, and "
        "fine-tuned from; scratch runs train on train+validation with the same seed; the test set is scored "
        "once per run",
        "scratch inits come from a seed stream of their own, never the base's (so never the lottery ticket)",
        BUDGET_NOTE,
        "the unpruned 'paper' row is the untuned paper recipe"
        + (" (the tuned large model is its 'best' row)" if unpruned_tuned else "; the arms below it were tuned"),
    ]
    if not trunk.base_trained:
        notes.append(
            "no base was trained for the search: no arm inherits its weights and the method does not read "
            "them, so its architecture only set the budgets; the unpruned row is the final seeds' bases"
        )
    if "finetune-random" in spec.study.arms:
        notes.append(
            "control: `finetune-random` fine-tunes randomly selected channels (or weights) at the method's "
            "per-layer widths (counts), tuned with the same space and budget as `finetune`"
        )
    if trunk.arch:
        kinds = ", ".join(trunk.arch)
        source = f"; transferred takes the pattern of {spec.arch.pattern_from}'s pruned architecture" * (
            "transferred" in trunk.arch
        )
        notes.append(
            f"architecture arms ({kinds}; the paper's Section 5): uniform keeps one fraction of every prunable "
            "layer, guided the pruned architecture's mean fraction per stage (feature-map size and role)"
            f"{source}; each rescaled to the pruned architecture's {spec.arch.match} within "
            f"{100 * spec.arch.tolerance:g}%, trained from scratch with its own searched study at each budget, "
            "the paper recipe enqueued in it as in Scratch-E/B's (E epochs, or B epochs of itself). Claim 4: the "
            "pruned architecture's Scratch pick minus uniform's, one-sided "
            f"superiority paired by seed, margin {spec.verdict.arch_margin:g} pp, in the same Holm family"
        )
    if rounds > 1:
        share = round_share(spec.prune.ratio, rounds)
        notes.append(
            f"iterative pruning (Frankle & Carbin 2019; the official cifar/lottery-ticket/weight-level code): "
            f"{rounds} rounds, each removing {share:.1%} of the remaining conv weights by one global magnitude "
            "threshold, the survivors rewound to the base's init and retrained with the base recipe; every final "
            "and confirmation base is pruned the same way. Fine-tuning continues from the last round's trained "
            "ticket; the lottery ticket is the base's init under the final masks"
        )
    if spec.study.mode == "capped":
        notes.append(
            "capped mode: one study per arm and budget (fine-tune, Scratch-E and the others at E; Scratch-B at "
            "B, and at P when P is judged), each searching epochs up to its own cap with validation accuracy as "
            "its one objective, so every pick is within its budget by construction; fine-tune's pick at E is "
            "also its pick at B and P (its pipeline, base plus at most E epochs, is within P)"
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
    later = {"min_seeds": 2, "primary": "1@B"}  # fields added to [verdict] since studies first recorded it
    recorded = {
        json.dumps({**later, **r} if isinstance(r := s.user_attrs.get("verdict"), dict) else r, sort_keys=True)
        for s in studies.values()
    }
    if recorded != {json.dumps(v.model_dump(mode="json"), sort_keys=True)}:
        why.append("the spec's [verdict] table differs from the one recorded when the studies were made")
    if margin is not None and margin != v.margin:
        why.append(f"--margin {margin} pp chosen at report time (pre-registered: {v.margin} pp)")
    if confidence is not None and confidence != v.confidence:
        why.append(f"--confidence {confidence} chosen at report time (pre-registered: {v.confidence})")
    m = v.margin if margin is None else margin
    c = v.confidence if confidence is None else confidence
    return Analysis(m / 100, c, v.budgets, tuple(why), v.min_seeds, v.primary, v.arch_margin / 100)


def params_reduction(trunk: Trunk) -> float:
    """1 - the pruned network's parameters (non-zero ones for weight-level pruning) / the base's."""
    pruned = trunk.pruned
    return 1 - param_count(pruned.model, nonzero=not pruned.structured) / param_count(build_model(trunk.base_spec))


def trial_points(studies: dict[str, optuna.Study]) -> dict[str, list[tuple[float, float]]]:
    """(lr, validation accuracy) of every completed trial, per study."""
    return {
        arm: [(t.params["lr"], t.values[0]) for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        for arm, s in studies.items()
    }


def write_verdicts(
    search: FinishedSearch,
    final: FinalEvaluation,
    out_dir: Path,
    margin: float | None = None,
    confidence: float | None = None,
) -> Report:
    """The report of one setting, into `out_dir/<spec>`; logged as the spec run's `report` child."""
    spec, studies, trunk, tree, root = search.spec, search.studies, search.trunk, search.tree, search.root
    choices, missing, results = final.choices, final.missing, final.results
    caveats = [*search.caveats, *final.caveats]
    mode = spec.study.mode
    unpruned = f"the weights file {spec.weights}, not trained here" if spec.weights else "the paper recipe, untuned"
    recipes = {(c.arm, c.name): c.source for c in choices} | {("unpruned", "paper"): unpruned}
    table = results_table(results, recipes)
    analysis = analysis_for(spec, studies, margin, confidence)
    gaps = tuning_gaps(results, mode)
    points = trial_points(studies)
    by_arm = {arm_of(k): v for k, v in points.items() if cap_of(k) in (None, "E")}  # claim 2's cells are at E
    bands = lr_bands(by_arm, spec.space.lr.low, spec.space.lr.high) if "lottery" in by_arm else []
    verdicts, primary = analyse(results, analysis, mode, bands)  # as `rethink verdict` on runs.csv
    external = external_claims(results, analysis, mode, published().get(row_key(spec), {}).get("finetune"))
    if external and not any(v.get("role") == "primary" for v in verdicts):
        primary = primary.removesuffix(".") + (
            " (no fine-tune arm: prune.method gives an architecture only); the comparisons with the published "
            "fine-tuned model below are external and descriptive."
        )
    verdicts += external
    out = out_dir / report_folder(spec, search.names)
    arch_lines, arch_data = architecture_section(trunk, results, analysis.budgets, out)
    for v in verdicts:  # claim 4 names the sizes matched and the architectures trained
        if v.get("comparison_id", "")[:1] == "4":
            v["sizes"] = arch_data["architectures"]
    imp = importances(studies)
    curves = {}
    for c in choices:
        study = studies.get(c.study_arm)  # None: a fixed recipe of the claim 2 protocol
        run_id = study.trials[c.trial].user_attrs.get("mlflow_run_id") if study and c.trial is not None else None
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
        "method": f"{spec.prune.method} {spec.prune.variant or spec.prune.ratio}"
        + (f", iterative: {spec.prune.rounds} rounds" if spec.prune.rounds > 1 else ""),
        "paper_row": row_key(spec),
        "flops_reduction": f"{100 * reduction:.1f}%",
        "params_reduction": f"{100 * params_reduction(trunk):.1f}%",
        "seeds": spec.final.seeds,
        "searched_trials_per_study": spec.study.n_trials,
        "studies": ", ".join(s.study_name for s in studies.values()),
        "mode": spec.study.mode,
        "analysis": analysis.describe(),
        "analysis_fields": asdict(analysis),  # what pooling over levels reads back
        "budgets_macs": {"E": trunk.budgets.train_e, "B": trunk.budgets.train_b, "P": trunk.budgets.pipeline_p},
        "spec_digest": spec.digest(),
    }
    verdict_png = verdict_figure(verdicts, analysis, out / VERDICT_PNG)  # report.md shows it first
    notes = method_notes(spec, trunk)
    missing_ = [asdict(m) for m in missing]
    selection = selection_section(spec, studies, trunk.caps_for, choices, final.confirmations, final.confirm_cost)
    n_val, n_test = len(trunk.split.y_eval), max((r.n_test for r in results), default=0)
    carry = carryover_section(choices, final.confirmations, results, gaps, n_val, n_test)
    selection = ([*arch_lines, *carry[0], *selection[0]], {**selection[1], **carry[1], **arch_data})
    paths = write_report(out, table, gaps, verdicts, imp, header, caveats, notes, missing_, primary, selection)
    runs_frame(results).to_csv(out / "runs.csv", index=False)  # valid input to `rethink verdict`
    c = trunk.budgets
    pngs = figures(studies, curves, out, {"E": c.train_e, "B": c.train_b, "P": c.pipeline_p})
    pngs.append(lr_sensitivity_figure(points, out))
    paths["html"] = write_html(out, paths["report"].read_text(), pngs, f"rethink report: {spec.name}")
    report_run = tree.child(root, "report", "report", {"rethink.spec_digest": spec.digest()}, reuse=False)
    arch_pngs = [out / f for f in (ARCH_FIGURE, EFFICIENCY_FIGURE) if arch_data and (out / f).is_file()]
    for p in [*paths.values(), verdict_png, *pngs, *arch_pngs, *out.glob("*.csv")]:
        tree.client.log_artifact(report_run, str(p))
    tree.log_metrics(
        report_run,
        {
            f"{r['arm']}.{r['choice'].replace('@', '_at_')}.test_acc_mean": r["test_acc_mean"]
            for r in table.to_dict(orient="records")
        },
    )
    tree.end(report_run)
    tree.client.log_artifact(root, str(paths["html"]))  # self-contained: the spec run's artifacts show it too
    if not os.environ.get("MLFLOW_RUN_ID"):  # the project run of `mlflow run` is ended by MLflow
        tree.end(root)
    return Report(out, table, verdicts, missing, caveats, report_run, primary, root)
