import pytest
import torch

from rethink.models import MODELS, ArchSpec, ModelError, build_model, default_spec, prunable_units


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
def test_widths_set_every_prunable_unit(name):
    spec = default_spec(name, width_scale=0.5)
    widths = tuple(max(1, w - (i % 3)) for i, w in enumerate(spec.widths))
    model = build_model(ArchSpec(name, widths, 3, 10, 32))
    units = prunable_units(ArchSpec(name, widths), model)
    assert sorted(u.width for u in units) == list(range(len(widths)))  # every width belongs to one unit
    for u in units:
        if u.conv is not None:
            assert model.get_submodule(u.conv).out_channels == widths[u.width]
        else:
            assert model.get_submodule(u.select).index.numel() == widths[u.width]
        for c in u.consumers:
            consumer = model.get_submodule(c)
            assert getattr(consumer, "in_channels", getattr(consumer, "in_features", None)) == widths[u.width]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_widths_and_names_are_errors():
    with pytest.raises(ModelError, match="resnet56"):
        build_model(ArchSpec("resnet56", (16,) * 3))
    with pytest.raises(ModelError, match="valid names"):
        default_spec("alexnet")
    with pytest.raises(ModelError, match=">= 1"):
        build_model(ArchSpec("vgg11", (0,) * 8))
