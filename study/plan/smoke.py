"""Smoke mode: any spec's whole pipeline (base, prune, every study with one searched trial and one baseline,
confirmation on one seed and one more base, two final seeds, verdicts, report) on a few synthetic images of
the spec's input shape and class count, one epoch of base training: it checks that the spec runs, not what
it finds."""

from __future__ import annotations

from dataclasses import replace

from rethink.data import (
    SYNTHETIC_PRESENT,
    DatasetShape,
    dataset_shape,
    folder_path,
    is_folder,
    split_resolution,
    synthetic_name,
)
from rethink.imagefolder import has_at_most
from rethink.models.external import is_external
from rethink.models.probe import check_runs
from rethink.models.registry import ModelError, build_model, model_entry

from .arch import base_arch
from .spec import Spec

SMOKE_SUFFIX = "-smoke"  # its studies, runs and report never mix with the spec's own
SMOKE_SIZE = 32  # the largest image side a smoke run trains at (ImageNet specs: 224 -> 32)
REGISTRY_SMOKE_SIZE = 16  # the registry's models run on any side from 8 px: theirs train at 16 (a quarter the work)
SMOKE_FOLDER_IMAGES = 2000  # an image folder this small is smoke-run itself (a test's JPEGs), else synthetic
SMOKE_NARROWEST = 8  # a registry model is narrowed for smoke runs (at most to a quarter) down to this many channels


def smoke_width_scale(spec: Spec) -> float:
    """The registry's models train at a fraction of their widths in smoke runs (VGG-19: a quarter, 1/16 of
    the parameters), no layer under 8 channels: the work of a smoke run follows the parameters, and its
    code paths do not depend on them. A library model keeps its own (it has no widths)."""
    if is_external(spec.model):
        return 1.0
    narrowest = min(model_entry(spec.model).default_widths) * spec.width_scale
    return min(1.0, max(0.25, SMOKE_NARROWEST / narrowest))


def _runs_at(spec: Spec, shape: DatasetShape) -> bool:
    """Whether the spec's model takes one image of `shape`."""
    try:
        check_runs(build_model(base_arch(spec, shape)), (shape.in_channels, shape.input_size, shape.input_size), "")
    except ModelError:
        return False
    return True


def smoke_spec(spec: Spec) -> Spec:
    """The spec at smoke size: two training images for each of up to 10 classes (one each side of the
    validation split; the model keeps the spec's class count), one test image each, at most 16×16 for the
    registry's models and 32×32 for a library model (its own size if it takes no other) or a transferred
    pattern (an image folder of at most 2,000 images, e.g. a test's, is used itself at 32×32; images a spec
    resizes on the device are made at half the side and resized), the registry's models narrowed
    (`smoke_width_scale`), E = 1 epoch (B and P follow from the
    FLOPs), of its operating points the first and the last (the trade-off report needs two; every level's
    budgets are checked statically by the cost), at most two rounds of iterative pruning, everything else as
    the spec says."""
    d = spec.model_dump()
    d["name"] = spec.name + SMOKE_SUFFIX
    d["val_fraction"] = 0.5
    if is_folder(spec.dataset) and has_at_most(folder_path(spec.dataset, spec.data_root), SMOKE_FOLDER_IMAGES):
        d["dataset"] = f"{split_resolution(spec.dataset)[0]}@{SMOKE_SIZE}"  # its own JPEGs, decoded as in a run
        size = SMOKE_SIZE
        d["description"] = f"smoke run of {spec.name}: its small image folder at {SMOKE_SIZE}px, one base epoch"
    else:
        shape = dataset_shape(spec.dataset, spec.data_root)
        # a library model may need its size; a transferred pattern is keyed by its source's feature-map sizes
        side = SMOKE_SIZE if is_external(spec.model) or spec.arch.pattern_from else REGISTRY_SMOKE_SIZE
        if is_external(spec.model) and not _runs_at(spec, replace(shape, input_size=min(shape.input_size, side))):
            side = shape.input_size  # a model made for one size (a ViT's position embedding): smoke-run at it
        shape = replace(shape, input_size=min(shape.input_size, side))
        size = shape.input_size
        k = min(shape.num_classes, SYNTHETIC_PRESENT)  # the classes the images use; the model has all of them
        d["dataset"], d["normalize"] = synthetic_name(shape, 2 * k, k), "split"
        if split_resolution(spec.dataset)[1] is not None:  # resized on the device: stored at half, so it runs
            stored = replace(shape, input_size=max(8, size // 2))
            d["dataset"] = f"{synthetic_name(stored, 2 * k, k)}@{size}"
        d["description"] = f"smoke run of {spec.name}: synthetic images, one base epoch; checks the pipeline only"
    d["width_scale"] = spec.width_scale * smoke_width_scale(spec)
    d["base"]["epochs"] = 1
    d["study"]["n_trials"] = 1
    # one baseline per study (the paper recipe where the spec has it): the enqueue-and-train path is the same
    # for every baseline, and each one's fields are checked against the space when the spec loads
    d["study"]["baselines"] = [b for b in spec.study.baselines if b == "paper"] or list(spec.study.baselines[:1])
    d["select"] |= {"top_k": 1, "seeds": 1, "bases": 0 if spec.weights else 1}  # a file's base is the only one
    d["final"]["seeds"] = 2
    d["verdict"]["min_seeds"] = 2
    if spec.prune.ratios and len(spec.prune.ratios) > 2:  # operating points: the first and the last level
        d["prune"]["ratios"] = [spec.prune.ratios[0], spec.prune.ratios[-1]]
    d["prune"]["rounds"] = min(spec.prune.rounds, 2)  # iterative pruning: one retraining round shows it runs
    if spec.proxy is not None:  # two candidates per study, so the proxy's rank check has a pair to rank
        d["select"]["top_k"] = 2
        if spec.proxy.resolution is not None:
            half = min(spec.proxy.resolution, size // 2)
            shape = replace(dataset_shape(spec.dataset, spec.data_root), input_size=half)
            # a library model that takes no image this small (ConvNeXt's stride 32) trains its proxy at full size
            d["proxy"]["resolution"] = half if not is_external(spec.model) or _runs_at(spec, shape) else None
    return Spec.model_validate(d)
