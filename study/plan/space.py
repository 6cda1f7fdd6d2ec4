"""The search space of every arm, and how a trial's values turn an arm's recipe into its config."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna

from rethink.train import TrainConfig

from .training_tables import SearchSpace


def suggest(trial: optuna.Trial, space: SearchSpace, epochs: tuple[int, int, bool] | int) -> dict[str, Any]:
    """Values for one trial; enqueued baselines arrive through the same calls with fixed values. `epochs`:
    the study's (low, high, log) range (layout.epoch_range), or in fixed-budget mode the arm's own epochs."""
    params = {
        "lr": trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log),
        "schedule": trial.suggest_categorical("schedule", list(space.schedule)),
        "augment": trial.suggest_categorical("augment", list(space.augment)),
    }
    if isinstance(epochs, tuple):
        low, high, log = epochs
        params["epochs"] = trial.suggest_int("epochs", low, high, log=log)
    else:
        params["epochs"] = epochs
    if space.weight_decay is not None:
        wd = space.weight_decay
        params["weight_decay"] = trial.suggest_float("weight_decay", wd.low, wd.high, log=wd.log)
    if space.batch_size is not None:
        params["batch_size"] = trial.suggest_categorical("batch_size", list(space.batch_size))
    return params


def apply(params: dict[str, Any], recipe: TrainConfig) -> TrainConfig:
    """The arm's recipe with the trial's values (schedule shape included; milestones stay fractions)."""
    return replace(recipe, **{k: v for k, v in params.items() if k in TrainConfig.field_names()})
