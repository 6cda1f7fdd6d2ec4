"""The experiment layer: specs, Optuna studies and MLflow tracking around `rethink`."""
