"""DepGraph (Torch-Pruning) channel pruning of any library model, with the criterion named in the config.

The classifier is never pruned. The pruned architecture is returned as an ArchSpec whose `layout` records
every changed layer (rethink.models.layout), so the scratch arms rebuild it with a fresh initialisation.
Taylor and Hessian score channels by the loss gradient on calibration images, against the trained model's
own predictions (the images come without labels; a trained model predicts its training images nearly
always right).
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from rethink.models import ArchSpec
from rethink.models.external import classifier_layers
from rethink.models.layout import record_layout
from rethink.models.probe import check_runs, layer_named
from rethink.models.registry import ModelError, canonical_json

from .registry import PruneConfig, PrunedModel, register_method
from .surgery import PruneError

CRITERIA = ("l1", "l2", "bn-scale", "taylor", "hessian", "fpgm", "lamp", "random")
GRADIENT_CRITERIA = ("taylor", "hessian")
REDUCTIONS = ("mean", "first", "sum", "max")


def _tp():
    try:
        import torch_pruning
    except ImportError as e:
        raise PruneError(f"depgraph needs the 'models' extra: pip install 'rethink[models]' ({e})") from e
    return torch_pruning


def importance(criterion: str, reduction: str = "mean"):
    """Torch-Pruning's importance for a criterion name (its defaults: group mean, normalised by the mean)."""
    tp = _tp()
    imp = tp.importance
    make = {
        "l1": lambda: imp.MagnitudeImportance(p=1, group_reduction=reduction),
        "l2": lambda: imp.MagnitudeImportance(p=2, group_reduction=reduction),
        "bn-scale": lambda: imp.BNScaleImportance(group_reduction=reduction),
        "taylor": lambda: imp.TaylorImportance(group_reduction=reduction),
        "hessian": lambda: imp.HessianImportance(group_reduction=reduction),
        "fpgm": lambda: imp.FPGMImportance(group_reduction=reduction),
        "lamp": lambda: imp.LAMPImportance(group_reduction=reduction),
        "random": imp.RandomImportance,
    }
    if criterion not in make:
        raise PruneError(f"criterion {criterion!r} is unknown; valid: {', '.join(CRITERIA)}")
    if reduction not in REDUCTIONS:
        raise PruneError(f"group_reduction {reduction!r} is unknown; valid: {', '.join(REDUCTIONS)}")
    return make[criterion]()


def _ignored(model: nn.Module, spec: ArchSpec, patterns: tuple[str, ...]) -> list[nn.Module]:
    """The classifier, and every layer whose name matches one of `patterns` (fnmatch)."""
    ignored = classifier_layers(model, spec.num_classes)
    for pattern in patterns:
        hits = [m for name, m in model.named_modules() if name and fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise PruneError(f"prune.ignore pattern {pattern!r} matches no layer of {spec.model}")
        ignored += hits
    return ignored


def _attention(model: nn.Module) -> dict[nn.Module, int]:
    """Multi-head attention layers (timm's: a `qkv` Linear and `num_heads`)."""
    return {
        m.qkv: m.num_heads
        for m in model.modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)
    }


def _token_width(model: nn.Module, example: torch.Tensor, heads: dict[nn.Module, int]) -> list[nn.Module]:
    """In a model with attention, the layers that write the token width (the residual stream the attention
    reads): kept, with the heads, so only the MLPs' hidden channels are pruned."""
    if not heads:
        return []
    tp = _tp()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    kept = set(heads)
    for qkv in heads:
        group = graph.get_pruning_group(qkv, tp.prune_linear_in_channels, idxs=[0])
        kept |= {dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)}
    return [m for m in model.modules() if m in kept]


def make_pruner(
    model: nn.Module,
    spec: ArchSpec,
    config: PruneConfig,
    scorer,
    ratios: dict[nn.Module, float] | None = None,
    ignored: list[nn.Module] | None = None,
):
    """Torch-Pruning's pruner over `model` (pruned in place); a model it cannot trace is refused. `ignored`:
    the layers left whole when a first pruner of the same model found them (and the model ran)."""
    tp = _tp()
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    example = torch.zeros(1, *shape)
    heads = _attention(model)
    if ignored is None:
        try:
            check_runs(model, shape, spec.model)
        except ModelError as e:
            raise PruneError(str(e)) from e
    with layer_named(model, f"DepGraph cannot trace {spec.model}", PruneError), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unwrapped.*|.*last non-singleton.*")
        if ignored is None:
            ignored = _ignored(model, spec, config.ignore) + _token_width(model, example, heads)
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=scorer,
            global_pruning=config.scope == "global" and not ratios,
            pruning_ratio=0.0 if ratios else float(config.ratio or 0.0),
            pruning_ratio_dict=ratios,
            max_pruning_ratio=config.max_ratio,
            iterative_steps=1 if ratios else config.steps,
            ignored_layers=ignored,
            round_to=config.round_to,
            num_heads=heads,
            prune_head_dims=False,
            prune_num_heads=False,
        )
    lost = [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in pruner.DG.module2node and m not in ignored
    ]
    if lost:
        raise PruneError(
            f"DepGraph cannot trace {spec.model} at layer {lost[0]!r}: a custom op or a detached tensor cuts it "
            f"off the graph ({len(lost)} such layers); list it in prune.ignore to leave it unpruned"
        )
    return pruner


def prune_step(pruner, model: nn.Module, spec: ArchSpec) -> None:
    with layer_named(model, f"DepGraph could not prune {spec.model}", PruneError):
        pruner.step()


def _gradients(model: nn.Module, images: torch.Tensor, scorer, criterion: str) -> None:
    """Loss gradients on the calibration images (targets: the model's own predictions)."""
    model.eval()
    with torch.no_grad():
        targets = model(images).argmax(1)
    model.zero_grad()
    if criterion == "taylor":
        F.cross_entropy(model(images), targets).backward()
        return
    scorer.zero_grad()  # hessian: squared per-image gradients, averaged (Optimal Brain Damage's diagonal)
    for x, y in zip(images.split(1), targets.split(1), strict=True):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for p in model.parameters():
            if p.grad is not None:
                scorer._accu_grad[p] = scorer._accu_grad.get(p, 0) + p.grad.detach().pow(2)
                scorer._counter[p] = scorer._counter.get(p, 0) + 1


def check_layers(model: nn.Module, spec: ArchSpec) -> None:
    """No layer may lose every channel."""
    for name, m in model.named_modules():
        sizes = {
            nn.Conv2d: ("out_channels", "in_channels"),
            nn.Linear: ("out_features", "in_features"),
        }.get(type(m), ())
        for attr in sizes:
            if getattr(m, attr) < 1:
                raise PruneError(f"{spec.model}: the ratio removes every channel of layer {name!r}; lower it")


def finish(small: nn.Module, model: nn.Module, spec: ArchSpec, config: PruneConfig) -> PrunedModel:
    check_layers(small, spec)
    example = torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size)
    with layer_named(small, f"the pruned {spec.model} does not run", PruneError), torch.no_grad():
        small.eval()(example)
    layout = record_layout(small, model)
    if not layout and (config.ratio or 0) > 0:
        why = "it has no BatchNorm to score" if config.criterion == "bn-scale" else "every group is ignored"
        raise PruneError(f"{spec.model}: {config.criterion} at ratio {config.ratio} removed no channel ({why})")
    return PrunedModel(replace(spec, layout=canonical_json(layout)), small, config)


@register_method("depgraph", families=("external",), needs_data=lambda c: c.criterion in GRADIENT_CRITERIA)
def depgraph(model: nn.Module, spec: ArchSpec, config: PruneConfig, data: torch.Tensor | None = None) -> PrunedModel:
    criterion = config.criterion or "l1"
    if spec.layout:
        raise PruneError(f"{spec.model} is already pruned (its spec has a layout); prune the unpruned model")
    small = copy.deepcopy(model).cpu()
    scorer = importance(criterion, config.group_reduction)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # the random criterion draws from the config's seed
        pruner = make_pruner(small, spec, config, scorer)
        for _ in range(config.steps):
            if criterion in GRADIENT_CRITERIA:
                _gradients(small, data.cpu()[: config.calibration_images], scorer, criterion)
            prune_step(pruner, small, spec)
    small.zero_grad(set_to_none=True)
    return finish(small, model, spec, config)


def random_like_layout(model: nn.Module, spec: ArchSpec, reference: PrunedModel, config: PruneConfig) -> PrunedModel:
    """The random-selection control: channels drawn at random (from `config.seed`), each layer cut to the
    width the reference gives it."""
    small = copy.deepcopy(model).cpu()
    names = {m: n for n, m in small.named_modules()}
    target = dict(reference.model.named_modules())
    ratios = {}
    for m, name in names.items():
        out = {nn.Conv2d: "out_channels", nn.Linear: "out_features"}.get(type(m))
        if out and getattr(target[name], out) < getattr(m, out):
            kept = getattr(target[name], out)
            ratios[m] = 1 - (kept + 0.5) / getattr(m, out)  # int(n * (1 - ratio)) == kept
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        pruner = make_pruner(small, spec, replace(config, round_to=None), _tp().importance.RandomImportance(), ratios)
        prune_step(pruner, small, spec)
    pruned = finish(small, model, spec, config)
    if pruned.spec.layout != reference.spec.layout:
        raise PruneError(f"{spec.model}: the random control did not reproduce the reference's layer widths")
    return pruned
