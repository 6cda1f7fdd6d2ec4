import pytest
import torch

from rethink.models import MODELS, ArchSpec, ModelError, build_model, default_spec


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size, channels", [(8, 1), (32, 3)])
def test_every_model_runs_at_8_and_32(name, size, channels):
    torch.manual_seed(0)
    model = build_model(default_spec(name, channels, 7, size, width_scale=0.25))
    x = torch.randn(3, channels, size, size)
    out = model(x)
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_widths_set_conv_channels(name):
    spec = default_spec(name, width_scale=0.5)
    widths = tuple(w + (i % 3) for i, w in enumerate(spec.widths))
    model = build_model(ArchSpec(name, widths, 3, 10, 32))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if MODELS[name].family == "vgg":
        assert tuple(c.out_channels for c in convs) == widths
    else:  # resnet: widths are the inner (first) conv of each block
        assert tuple(c.out_channels for c in convs[1::2]) == widths
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_widths_and_names_are_errors():
    with pytest.raises(ModelError, match="resnet56"):
        build_model(ArchSpec("resnet56", (16,) * 3))
    with pytest.raises(ModelError, match="valid names"):
        default_spec("alexnet")
    with pytest.raises(ModelError, match=">= 1"):
        build_model(ArchSpec("vgg11", (0,) * 8))
