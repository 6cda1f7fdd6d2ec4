"""rethink: the science of 'Rethinking the Value of Network Pruning' (datasets, models, pruning, training)."""

__version__ = "0.1.0"
