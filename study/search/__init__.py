"""The search of a spec: trunk (base -> prune), Optuna studies, trials, the run loop, reconciling."""
