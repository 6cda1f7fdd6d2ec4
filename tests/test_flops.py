import pytest
import torch

from rethink.flops import forward_flops, nonzero_forward_flops, param_count, training_flops
from rethink.models import build_model, default_spec


@pytest.mark.parametrize("name, expected", [("vgg16", 3.13e8), ("resnet56", 1.25e8), ("resnet110", 2.53e8)])
def test_flops_match_li_et_al(name, expected):
    macs = forward_flops(build_model(default_spec(name)), (3, 32, 32))
    assert abs(macs - expected) / expected < 0.01


def test_nonzero_flops_shrink_with_sparsity():
    model = build_model(default_spec("vgg11", width_scale=0.5))
    dense = forward_flops(model, (3, 32, 32))
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.view(-1)[::2] = 0.0  # half of every conv's weights
    half = nonzero_forward_flops(model, (3, 32, 32))
    assert forward_flops(model, (3, 32, 32)) == dense
    assert half == pytest.approx((dense - linear) / 2 + linear, rel=1e-3)
    assert param_count(model, nonzero=True) < param_count(model)


def test_training_flops_is_three_forwards_per_image():
    assert training_flops(1000, 50) == 150_000
