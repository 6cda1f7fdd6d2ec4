"""The spec schema, the search space, the study layout and its budgets."""
