"""MLflow tracking, Optuna storage, ownership, lifecycle, queries and progress lines."""
