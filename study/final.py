"""Final evaluation: the chosen configs of each arm retrained with several seeds on train+validation,
scored once on the test set. Every run is an MLflow run under the spec; finished ones are reused."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import optuna
from optuna.trial import TrialState

from rethink.arms import arm_epochs, build_arm, default_recipe
from rethink.data import load_dataset, train_test
from rethink.flops import training_flops
from rethink.models import build_model
from rethink.train import Runtime, config_digest, seed_everything, train

from .progress import PrintProgress
from .space import apply
from .tracking import MlflowEpochLogger, RunTree
from .trunk import Trunk


@dataclass(frozen=True)
class Choice:
    """A config picked from an arm's study for the final evaluation."""

    arm: str
    name: str  # best, best@E, best@B, paper, literature
    params: dict
    trial: int | None
    val_acc: float | None


def budget_flops(trunk: Trunk, epochs: int) -> float:
    """Training FLOPs of `epochs` epochs of the pruned model on the trial training split."""
    return training_flops(trunk.pruned_flops, epochs * len(trunk.split.y_train))


def choose(study: optuna.Study, arm: str, trunk: Trunk, pareto: bool) -> list[Choice]:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return []
    flops = (lambda t: t.values[1]) if pareto else (lambda t: t.user_attrs.get("train_flops", 0.0))

    def best(trials):
        return max(trials, key=lambda t: (t.values[0], -flops(t))) if trials else None

    picks: list[tuple[str, optuna.trial.FrozenTrial | None]] = [("best", best(done))]
    if pareto:
        e = trunk.base_config.epochs
        b = arm_epochs("scratch-b", trunk.base_config, trunk.base_flops, trunk.pruned_flops)
        for label, epochs in (("best@E", e), ("best@B", b)):
            limit = budget_flops(trunk, epochs) * 1.0001
            picks.append((label, best([t for t in done if flops(t) <= limit])))
    for t in done:
        if t.user_attrs.get("baseline"):
            picks.append((t.user_attrs["baseline"], t))
    choices, seen = [], set()
    for name, t in picks:
        if t is None:
            continue
        key = (name, t.number)
        if key not in seen:
            seen.add(key)
            choices.append(Choice(arm, name, dict(t.params), t.number, t.values[0]))
    return choices


@dataclass(frozen=True)
class FinalResult:
    arm: str
    choice: str
    seed: int
    test_acc: float
    train_flops: float
    epochs: int
    params: dict
    run_id: str


def evaluate_choices(
    choices: list[Choice], trunk: Trunk, seeds: int, tree: RunTree, root: str, runtime: Runtime
) -> list[FinalResult]:
    """Retrain each choice (and the unpruned base recipe) with `seeds` seeds on train+val; test once each."""
    spec = trunk.spec
    split = train_test(load_dataset(spec.dataset, spec.data_root))
    results = []
    base_params = {"lr": trunk.base_config.lr, "augment": trunk.base_config.augment}
    jobs = [(Choice("unpruned", "paper", base_params, None, None), s) for s in range(seeds)]
    jobs += [(c, s) for c in choices for s in range(seeds)]
    for i, (choice, s) in enumerate(jobs):
        seed = spec.seed + s
        if choice.arm == "unpruned":
            config = replace(trunk.base_config, seed=seed)
        else:
            recipe = default_recipe(choice.arm, trunk.base_config, trunk.base_flops, trunk.pruned_flops)
            config = apply(choice.params, replace(recipe, seed=seed))
        digest = config_digest({"arm": choice.arm, "config": config.to_dict(), "spec": spec.digest()})
        tags = {"arm": choice.arm, "choice": choice.name, "seed": seed, "rethink.digest": digest}
        tags["rethink.runtime"] = runtime.describe()
        # The same config chosen twice (best and best@B, say) is trained once per seed.
        old = tree.find({"rethink.kind": "final", "rethink.digest": digest}, root)
        if old and (run := tree.client.get_run(old)).info.status == "FINISHED" and "test_acc" in run.data.metrics:
            m = run.data.metrics
            results.append(
                FinalResult(
                    choice.arm, choice.name, seed, m["test_acc"], m["train_flops"], config.epochs, choice.params, old
                )
            )
            continue
        if old:
            tree.end(old, "KILLED", "interrupted; evaluated again")
        run_id = tree.child(root, f"final:{choice.arm}:{choice.name}:seed{seed}", "final", tags, reuse=False)
        tree.log_params(
            run_id,
            {f"train.{k}": v for k, v in config.to_dict().items()}
            | {"trial": choice.trial if choice.trial is not None else ""},
        )
        print(
            f"[final {i + 1}/{len(jobs)}] {choice.arm} {choice.name} seed {seed}: {config.epochs} epochs",
            file=sys.stderr,
            flush=True,
        )
        if choice.arm == "unpruned":
            seed_everything(seed)
            model, callbacks, forward = build_model(trunk.base_spec), [], trunk.base_flops
        else:
            arm = build_arm(
                choice.arm,
                trunk.pruned,
                trunk.base_spec,
                trunk.base_config,
                trunk.base_flops,
                seed=seed,
                init_state=trunk.init_state,
            )
            model, callbacks, forward = arm.model, arm.callbacks, trunk.pruned_flops
        callbacks = [*callbacks, MlflowEpochLogger(run_id, "test"), PrintProgress(config.epochs, "  ", every=10)]
        try:
            history = train(model, split, config, callbacks, runtime, eval_final_only=True)
        except BaseException as e:
            tree.end(run_id, "FAILED", repr(e))
            raise
        flops = training_flops(forward, history.images_seen)
        tree.log_metrics(run_id, {"test_acc": history.final.eval_acc, "train_flops": flops}, step=config.epochs)
        tree.end(run_id)
        results.append(
            FinalResult(
                choice.arm, choice.name, seed, history.final.eval_acc, flops, config.epochs, choice.params, run_id
            )
        )
    return results
