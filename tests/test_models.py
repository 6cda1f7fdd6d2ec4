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
            if u.bn is not None:
                assert model.get_submodule(u.bn).num_features == widths[u.width]
        else:
            assert model.get_submodule(u.select).index.numel() == widths[u.width]
        for c in u.consumers:
            consumer = model.get_submodule(c)
            if isinstance(consumer, torch.nn.Conv2d):
                assert consumer.in_channels == widths[u.width]
            else:  # a Linear reads each channel once (at 32 px even ImageNet's VGG pools to 1×1)
                assert consumer.in_features == widths[u.width]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_widths_and_names_are_errors():
    with pytest.raises(ModelError, match="resnet56"):
        build_model(ArchSpec("resnet56", (16,) * 3))
    with pytest.raises(ModelError, match="valid names"):
        default_spec("alexnet")
    with pytest.raises(ModelError, match=">= 1"):
        build_model(ArchSpec("vgg11", (0,) * 8))


@pytest.mark.parametrize("name", sorted(n for n, e in MODELS.items() if e.classifiers and e.input_size == 32))
def test_vgg_heads_and_bn_init_follow_the_official_models(name):
    """network-slimming/models/vgg.py and weight-level/models/cifar/vgg.py end in Linear(512, classes); the
    slimming one fills every BN scale with 0.5 (compared with Eric-mingjie/rethinking-network-pruning)."""
    linear = build_model(default_spec(name, classifier="linear", bn_init=0.5))
    assert [type(m).__name__ for m in linear.classifier] == ["Linear"]
    assert (linear.classifier[0].in_features, linear.classifier[0].out_features) == (512, 10)
    bns = [m for m in linear.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(default_spec(name).widths) and all(torch.all(m.weight == 0.5) for m in bns)
    default = build_model(default_spec(name))
    assert [type(m).__name__ for m in default.classifier] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert all(torch.all(m.weight == 1.0) for m in default.modules() if isinstance(m, torch.nn.BatchNorm2d))
    spec = default_spec(name, classifier="linear", bn_init=0.5)
    assert ArchSpec.from_dict(spec.to_dict()) == spec and "classifier" not in default_spec(name).to_dict()


@pytest.mark.parametrize("name", sorted(n for n, e in MODELS.items() if not e.classifiers))
def test_a_head_choice_is_refused_where_the_model_has_one_head(name):
    with pytest.raises(ModelError, match=f"classifier 'linear' does not fit {name}, which takes only its own"):
        build_model(default_spec(name, classifier="linear"))


# Parameter counts of the official code's models (github.com/Eric-mingjie/rethinking-network-pruning@2ac473d70a09),
# counted by instantiating them: cifar/weight-level/models/cifar/{preresnet,densenet}.py (PreResNet(depth=110);
# DenseNet(depth=100, block=Bottleneck, compressionRate=2); DenseNet(depth=40)) and
# cifar/l1-norm-pruning/models/resnet.py (resnet(depth=32)), for 10 and 100 classes.
OFFICIAL_PARAMS = {
    ("preresnet110", 10): 1_146_842,
    ("preresnet110", 100): 1_169_972,
    ("densenet-bc100", 10): 769_162,
    ("densenet-bc100", 100): 800_032,
    ("densenet40", 10): 1_059_298,
    ("densenet40", 100): 1_100_428,
    ("resnet32", 10): 464_154,
    ("resnet32", 100): 470_004,
}


@pytest.mark.parametrize("name, classes", sorted(OFFICIAL_PARAMS))
def test_parameter_counts_equal_the_official_models(name, classes):
    model = build_model(default_spec(name, num_classes=classes))
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[(name, classes)]


TORCHVISION_LAYOUTS = ["resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "vgg16_nobn"]


@pytest.mark.parametrize("name", TORCHVISION_LAYOUTS)
def test_imagenet_models_equal_torchvisions_at_full_width(name):
    """The official ImageNet code builds torchvision's resnet34/resnet50/vgg11_bn/vgg16_bn/vgg16: same tensors."""
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        ours = build_model(default_spec(name, 3, 1000, 224))
        theirs = getattr(torchvision.models, name.removesuffix("_nobn"))()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    shapes = sorted(tuple(t.shape) for t in ours.state_dict().values())
    assert shapes == sorted(tuple(t.shape) for t in theirs.state_dict().values())


def test_sss_preact_resnet50_has_torchvisions_convs_and_its_own_bns():
    """SSS's MXNet ResNet-50 (symbol/resnet.py) is pre-activation: torchvision's conv and fc tensors; a BN before
    every block's first conv and one before the pool instead of one after each conv, none on the projection."""
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        ours = build_model(default_spec("resnet50_preact", 3, 1000, 224))
        theirs = torchvision.models.resnet50()

    def convs(model):
        return sorted(
            tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
        )

    def bns(model):
        return sorted(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))

    assert convs(ours) == convs(theirs)
    inputs = [b.conv1.in_channels for b in ours.blocks]
    blocks = [b for b in theirs.modules() if isinstance(b, torchvision.models.resnet.Bottleneck)]
    inner = [w for b in blocks for w in (b.conv1.out_channels, b.conv2.out_channels)]
    assert bns(ours) == sorted([64, *inputs, *inner, 2048])


def test_imagenet_vgg_slimming_head_and_resnet_flops():
    """network-slimming's VGG-11 head has BN1d after each hidden Linear; ResNet-50 is 4.09 GMACs at 224."""
    from rethink.flops import forward_flops

    slim = build_model(default_spec("vgg11_bn", 3, 1000, 32, width_scale=0.25, classifier="slimming"))
    assert [type(m).__name__ for m in slim.classifier][:3] == ["Linear", "BatchNorm1d", "ReLU"]
    with torch.device("meta"):
        r50 = build_model(default_spec("resnet50", 3, 1000, 224))
    assert abs(forward_flops(r50, (3, 224, 224)) / 4.0892e9 - 1) < 1e-3
    with torch.device("meta"):  # the head reads 7×7 per channel at 224, the last map's 2×2 at 64
        assert build_model(default_spec("vgg16_bn", 3, 1000, 224)).classifier[0].in_features == 512 * 49
        assert build_model(default_spec("vgg16_bn", 3, 1000, 64)).classifier[0].in_features == 512 * 4


# The official code's predefined VGG-16s (no BN), as its cfg lists give them ('M' a max-pool):
# imagenet/thinet/models/thinetconv.py (conv), thinetvgg.py (gap, tiny; AvgPool2d(14, 2) then Linear(cfg[-1]));
# imagenet/regression-pruning/models/vgg_5x.py (5x). GMACs at 224 from the project's counter.
PREDEFINED_VGG16 = {
    "thinet-conv": (
        "torchvision",
        [32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"],
    ),
    "thinet-gap": ("gap", [32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]),
    "thinet-tiny": ("gap", [16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, "M", 128, 128, 256]),
    "vgg16-5x": ("torchvision", [24, 22, "M", 41, 51, "M", 108, 89, 111, "M", 184, 276, 228, "M", 512, 512, 512, "M"]),
}


def _official_shapes(cfg: list, head: str, classes: int) -> list[tuple[int, ...]]:
    """The parameter shapes the official make_layers(cfg) and its head give."""
    shapes, c = [], 3
    for v in cfg:
        if v != "M":
            shapes += [(v, c, 3, 3), (v,)]
            c = v
    if head == "gap":
        return shapes + [(classes, c), (classes,)]
    return shapes + [(4096, c * 49), (4096,), (4096, 4096), (4096,), (classes, 4096), (classes,)]


@pytest.mark.parametrize("row", sorted(PREDEFINED_VGG16))
def test_the_official_predefined_vgg16s_are_vgg16_nobn_at_their_widths(row):
    """ThiNet's VGG-Conv/-GAP/-Tiny and the regression-based VGG-16-5x: the official layers, and FLOPs that
    fall as the architectures shrink (ThiNet's paper: -GAP about 3.3x and -Tiny about 15x fewer than VGG-16)."""
    from rethink.flops import forward_flops

    head, cfg = PREDEFINED_VGG16[row]
    spec = default_spec("vgg16_nobn", 3, 1000, 224, classifier=head).with_widths([v for v in cfg if v != "M"])
    with torch.device("meta"):
        model = build_model(spec)
        full = build_model(default_spec("vgg16_nobn", 3, 1000, 224))
    assert [tuple(p.shape) for p in model.parameters()] == _official_shapes(cfg, head, 1000)
    pools = sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features)
    assert pools == cfg.count("M")  # the gap head's last stage keeps its 14×14 map for the average
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    ratio = forward_flops(full, (3, 224, 224)) / forward_flops(model, (3, 224, 224))
    assert ratio > {"thinet-conv": 3.2, "thinet-gap": 3.3, "thinet-tiny": 15, "vgg16-5x": 4.4}[row]
    small = build_model(default_spec("vgg16_nobn", 3, 10, 32, classifier=head).with_widths(spec.widths))
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # the gap head is defined at any image size


def test_resnet50_2x_equals_the_official_definition_and_reads_only_its_selected_channels():
    """imagenet/regression-pruning/models/resnet_2x.py: bottleneck k's conv1 reads cfg_2x[3k] input channels (the
    ones filter.pkl marks), its convs are cfg_2x[3k+1] and [3k+2] wide, the rest is ResNet-50 (the official
    downsample conv also has a bias, redundant before its BN, left out here). 2.73 G multiply-adds against
    ResNet-50's 4.09: Scratch-B 134 epochs for E = 90 (the official 132 from a counter that also counts BN, ReLU
    and pooling)."""
    from rethink.arms import arm_epochs
    from rethink.flops import forward_flops
    from rethink.models.resnet_2x import CFG_2X, selections
    from rethink.train import TrainConfig

    model = build_model(default_spec("resnet50_2x", 3, 1000, 224))
    full = build_model(default_spec("resnet50", 3, 1000, 224))
    assert len(model.blocks) == 16
    for k, (block, ref) in enumerate(zip(model.blocks, full.blocks, strict=True)):
        reads, w1, w2 = CFG_2X[3 * k : 3 * k + 3]
        assert tuple(block.conv1.weight.shape) == (w1, reads, 1, 1) and tuple(block.conv2.weight.shape) == (
            w2,
            w1,
            3,
            3,
        )
        assert block.conv3.weight.shape[0] == ref.conv3.weight.shape[0] and block.select.index.tolist() == list(
            selections()[k]
        )
        assert (block.downsample is None) == (ref.downsample is None)
    block, x = model.blocks[1].eval(), torch.randn(2, 256, 8, 8)
    unselected = next(i for i in range(256) if i not in selections()[1])
    y = x.clone()
    y[:, unselected] += 5.0
    torch.testing.assert_close(block.select(x), x[:, list(selections()[1])])
    torch.testing.assert_close(block.conv1(block.select(y)), block.conv1(block.select(x)))
    macs, base = forward_flops(model, (3, 224, 224)), forward_flops(full, (3, 224, 224))
    assert macs / 1e9 == pytest.approx(2.73, abs=0.005)
    assert arm_epochs("scratch-b", TrainConfig(epochs=90), base, macs) == 134
