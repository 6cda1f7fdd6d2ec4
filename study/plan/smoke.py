"""Smoke mode: any spec's whole pipeline (base, prune, every study with one searched trial and its baselines,
confirmation on one seed and one more base, two final seeds, verdicts, report) on a few synthetic images of
the spec's input shape and class count, one epoch of base training: it checks that the spec runs, not what
it finds."""

from __future__ import annotations

from rethink.data import SYNTHETIC_PRESENT, dataset_shape, synthetic_name

from .spec import Spec

SMOKE_SUFFIX = "-smoke"  # its studies, runs and report never mix with the spec's own


def smoke_spec(spec: Spec) -> Spec:
    """The spec at smoke size: two training images for each of up to 10 classes (one each side of the
    validation split; the model keeps the spec's class count), one test image each, E = 1 epoch (B and P
    follow from the FLOPs), of its operating points the first and the last (the trade-off report needs two;
    every level's budgets are checked statically by the cost), at most two rounds of iterative pruning,
    everything else as the spec says."""
    shape = dataset_shape(spec.dataset, spec.data_root)
    k = min(shape.num_classes, SYNTHETIC_PRESENT)  # the classes the images use; the model has all of them
    d = spec.model_dump()
    d |= {
        "name": spec.name + SMOKE_SUFFIX,
        "description": f"smoke run of {spec.name}: synthetic images, one base epoch; checks the pipeline only",
        "dataset": synthetic_name(shape, 2 * k, k),
        "normalize": "split",
        "val_fraction": 0.5,
    }
    d["base"]["epochs"] = 1
    d["study"]["n_trials"] = 1
    d["select"] |= {"top_k": 1, "seeds": 1, "bases": 1}
    d["final"]["seeds"] = 2
    d["verdict"]["min_seeds"] = 2
    if spec.prune.ratios and len(spec.prune.ratios) > 2:  # operating points: the first and the last level
        d["prune"]["ratios"] = [spec.prune.ratios[0], spec.prune.ratios[-1]]
    d["prune"]["rounds"] = min(spec.prune.rounds, 2)  # iterative pruning: one retraining round shows it runs
    return Spec.model_validate(d)
