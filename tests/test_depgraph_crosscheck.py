"""Cross-checks of the DepGraph path against the project's own code: the filters DepGraph's L1 keeps on the
registry's ResNet-56 are those the hand-written L1-norm method keeps, and the project's FLOPs and parameter
counts of pruned library models agree with Torch-Pruning's own counter."""

import warnings

import pytest
import torch
from torch import nn

tp = pytest.importorskip("torch_pruning", reason="the 'models' extra (timm, torch-pruning) is not installed")

from rethink.flops import _counted, forward_flops, param_count  # noqa: E402
from rethink.models import build_model, default_spec, model_entry, prunable_units  # noqa: E402
from rethink.prune import PruneConfig, prune  # noqa: E402
from rethink.prune.variants import unit_ratios  # noqa: E402

warnings.filterwarnings("ignore", message=".*non-singleton.*")


@pytest.mark.parametrize("variant", ["resnet56-a", "resnet56-b"])
def test_depgraph_l1_keeps_the_filters_the_hand_written_l1_norm_keeps_on_resnet56(variant):
    torch.manual_seed(0)
    spec = default_spec("resnet56")
    model = build_model(spec).eval()
    hand = prune(model, spec, PruneConfig("l1-norm", variant=variant))
    units = prunable_units(spec, model)
    ratios = unit_ratios(spec, len(units), PruneConfig("l1-norm", variant=variant))
    graph_model = build_model(spec).eval()
    graph_model.load_state_dict(model.state_dict())
    roots = {graph_model.get_submodule(units[k].conv): k for k in ratios}
    others = [m for m in graph_model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in roots]
    pruner = tp.pruner.MetaPruner(
        graph_model,
        torch.zeros(1, 3, 32, 32),
        # Li et al.'s criterion: the L1 norm of the layer's own filters (the first of its group), unnormalised
        importance=tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None),
        pruning_ratio_dict={m: ratios[k] for m, k in roots.items()},
        ignored_layers=others,
    )
    removed: dict[int, set[int]] = {}
    for group in pruner.step(interactive=True):
        dep, idxs = group[0]
        removed[roots[dep.target.module]] = {int(i) for i in idxs}
        group.prune()
    graph_keep = {
        k: sorted(set(range(model_entry("resnet56").default_widths[k])) - removed.get(k, set())) for k in ratios
    }
    pruned_units = {k for k, r in ratios.items() if r > 0}
    assert {k: hand.keep[k] for k in pruned_units} == {k: graph_keep[k] for k in pruned_units}
    assert sum(len(v) for v in hand.keep.values()) < sum(model_entry("resnet56").default_widths[k] for k in ratios)
    assert param_count(graph_model) == param_count(hand.model)


def _conv_linear_macs(model: nn.Module, size: int) -> tuple[float, float]:
    """(ours, Torch-Pruning's) multiply-accumulates of the conv and linear layers, bias adds left out."""
    _, per_module = _counted(model, (3, size, size))
    prefix = type(model).__name__
    layers = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    ours = sum(per_module.get(f"{prefix}.{n}", 0.0) / 2 for n in layers.values())
    _, _, layer_ops, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, size, size), layer_wise=True)
    theirs = 0.0
    for m in layers:
        bias_adds = 0
        if m.bias is not None:  # Torch-Pruning adds one op per output element for a bias
            bias_adds = _outputs(model, m, size)
        theirs += float(layer_ops[m]) - bias_adds
    return ours, theirs


def _outputs(model: nn.Module, layer: nn.Module, size: int) -> int:
    seen = []
    hook = layer.register_forward_hook(lambda m, a, out: seen.append(out.numel()))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    hook.remove()
    return sum(seen)


@pytest.mark.parametrize(
    "name, args, size",
    [
        ("timm:resnet18", None, 64),
        ("timm:mobilenetv3_small_050", None, 64),
        ("timm:convnext_atto", None, 64),
        ("timm:efficientnet_b0", None, 64),
        ("timm:regnetx_002", None, 64),
        ("torchvision:resnet18", None, 64),
    ],
)  # a ViT is left out: Torch-Pruning's counter counts timm's attention as one module, not its Linears
def test_flops_and_parameters_of_a_pruned_library_model_agree_with_torch_prunings_count(name, args, size):
    spec = default_spec(name, 3, 10, size, model_args=args)
    model = build_model(spec)
    pruned = prune(model, spec, PruneConfig("depgraph", 0.5, criterion="l2", scope="local")).model
    for m in (model, pruned):
        ours, theirs = _conv_linear_macs(m, size)
        assert ours == pytest.approx(theirs, rel=0.01)
        assert param_count(m) == tp.utils.count_ops_and_params(m, torch.zeros(1, 3, size, size))[1]
    assert forward_flops(pruned, (3, size, size)) < 0.5 * forward_flops(model, (3, size, size))
