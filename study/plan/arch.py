"""What a spec builds before any data is read: its unpruned architecture for a dataset's shape, and its
pruning configuration."""

from __future__ import annotations

from typing import Protocol

from rethink.arms import INHERITING_ARMS
from rethink.models.probe import check_runs
from rethink.models.registry import ArchSpec, ModelError, build_model, default_spec, model_entry
from rethink.models.weights import load_weights
from rethink.prune.registry import METHODS, PruneConfig, needs_data

from .spec import Spec, SpecError


class Shaped(Protocol):
    """A dataset, or its shape (`rethink.data.DatasetShape`): what the architecture depends on."""

    in_channels: int
    num_classes: int
    input_size: int


def base_arch(spec: Spec, data: Shaped) -> ArchSpec:
    """The spec's unpruned architecture for the dataset's shape, with the spec's model options."""
    return default_spec(
        spec.model,
        data.in_channels,
        data.num_classes,
        data.input_size,
        spec.width_scale,
        spec.classifier,
        spec.bn_init,
        spec.conv_init,
        spec.model_args,
    )


def check_model_fits(spec: Spec, data: Shaped) -> None:
    """Before anything trains: a base from a weights file fits the model the spec builds, and a library
    model takes one blank image of the data's shape (the registry's models run on any image of at least
    8 px); a failure names the key or the layer."""
    arch = base_arch(spec, data)
    if spec.weights:  # the file read (weights_only) and matched key by key before anything trains
        try:
            load_weights(build_model(arch), spec.weights, spec.model)
        except ModelError as e:
            raise SpecError(f"spec {spec.name}: {e}") from None
    if model_entry(arch.model).family != "external":
        return
    model = build_model(arch)
    try:
        check_runs(model, (data.in_channels, data.input_size, data.input_size), spec.model)
    except ModelError as e:
        raise SpecError(f"spec {spec.name}: {e}; set model_args for this size (e.g. img_size, patch_size)") from None
    side = proxy_side(spec, data)
    if side is not None:
        try:
            check_runs(model, (data.in_channels, side, side), spec.model)
        except ModelError as e:
            raise SpecError(
                f"spec {spec.name}: proxy.resolution = {side}: {e}; leave proxy.resolution unset, or make the model "
                f"take any size (timm's ViTs: model_args dynamic_img_size = true)"
            ) from None


def proxy_side(spec: Spec, data: Shaped) -> int | None:
    """The image side the proxy's trials train at, where it differs from the data's."""
    p = spec.proxy
    if p is None or p.resolution is None or p.resolution >= data.input_size:
        return None
    return p.resolution


def prune_config(spec: Spec) -> PruneConfig:
    p = spec.prune
    return PruneConfig(
        p.method,
        p.ratio,
        p.variant,
        p.min_channels,
        p.scope,
        seed=spec.seed,
        like=p.like,
        rounds=p.rounds,
        criterion=p.criterion,
        group_reduction=p.group_reduction,
        max_ratio=p.max_ratio,
        round_to=p.round_to,
        steps=p.steps,
        ignore=p.ignore,
        calibration_images=p.calibration_images,
    )


def search_trains_base(spec: Spec) -> bool:
    """Whether the search needs a trained base: some arm inherits its weights, or the method reads them (a
    predefined architecture with scratch arms only needs neither: its search trains no base, and the final
    evaluation's per-seed bases give the unpruned row). A weights file's base is scored, not trained, either way."""
    if spec.weights or METHODS[spec.prune.method].inherits or needs_data(prune_config(spec)):
        return True
    return any(arm in INHERITING_ARMS for arm in spec.study.arms)
