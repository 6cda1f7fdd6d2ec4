import pytest

from conftest import REPO, TINY
from study.commands.cli import main
from study.plan.load import load_spec
from study.plan.spec import SPECS_DIR, SpecError
from study.records.storage import make_storage


@pytest.mark.parametrize("path", sorted(SPECS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_specs_validate(path):
    spec = load_spec(str(path))
    assert spec.name and spec.study.n_trials >= 1 and len(spec.digest()) == 12


def test_overrides_change_fields_and_digest():
    base = load_spec(TINY)
    spec = load_spec(TINY, ["study.n_trials=7", "dataset=npz:x.npz", "space.augment=['flip', 'none']"])
    assert spec.study.n_trials == 7 and spec.dataset == "npz:x.npz" and spec.space.augment == ("flip", "none")
    assert spec.digest() != base.digest()


def _write(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text((REPO / "tests" / "tiny.toml").read_text() + text)
    return str(path)


@pytest.mark.parametrize(
    "extra, field",
    [
        ("\n[verdict]\nmargin = 0.5\nsurprise = 1\n", "verdict.surprise: unknown field"),
        ("", "study.n_trials"),
    ],
)
def test_errors_name_the_field_and_file(tmp_path, extra, field):
    path = _write(tmp_path, extra)
    overrides = ["study.n_trials=-2"] if not extra else []
    with pytest.raises(SpecError) as e:
        load_spec(path, overrides)
    assert field in str(e.value) and "bad.toml" in str(e.value)


@pytest.mark.parametrize(
    "override, expect",
    [
        ("space.lr={low=0.1, high=0.01}", "space.lr"),
        ("space.epochs={low=5, high=2}", "space.epochs"),
        ("study.arms=['finetune', 'warm-start']", "study.arms"),
        ("prune.variant='resnet56-a'", "prune.variant"),
        (
            "prune.variant='vgg-conv'",
            "prune.variant 'vgg-conv' is a thinet layout and prune.method prunes with l1-norm",
        ),
        ("model='alexnet'", "valid names"),
        ("prune.method='prunall'", "prune.method: unknown method 'prunall'; valid names"),
        ("space.augment=['flip', 'blur']", "space.augment.1: unknown augmentation 'blur'"),
        ("space.augment=[]", "space.augment: Tuple should have at least 1 item"),
        ("study.arms=[]", "study.arms: Tuple should have at least 1 item"),
        ("study.arms=['finetune', 'finetune']", "arms repeat"),
        ("baselines.literature.augment='mixup'", "baselines.literature.augment: unknown augmentation"),
        ("baselines.literature.arms=['scratch-z']", "baselines.literature.arms.0: unknown arm"),
        ("classifier='mlp'", "classifier 'mlp' does not fit vgg11; valid: bn-mlp, linear"),
        ("normalize='zca'", "normalize: unknown normalization 'zca'; valid names"),
        ("dataset='imagenet'", 'set normalize = "imagenet"'),
        ("normalize='liu2019'", "constants for cifar10, cifar100 only, not 'digits'"),
        ("bn_init=0", "bn_init: Input should be greater than 0"),
        ("base.sfp_ratio=0.3", "base.sfp_ratio is set but prune.method is 'l1-norm'"),
    ],
)
def test_bad_values_are_refused(override, expect):
    with pytest.raises(SpecError, match=expect):
        load_spec(TINY, [override])


def test_an_image_folder_spec_refuses_cutout_before_anything_runs():
    with pytest.raises(SpecError, match=r"space.augment: 'crop-flip-cutout' is not available on image folders"):
        load_spec(TINY, ["dataset='imagenet'", "normalize='imagenet'", "space.augment=['flip', 'crop-flip-cutout']"])
    spec = load_spec(TINY, ["dataset='imagenet@64'", "normalize='imagenet'", "space.augment=['none', 'flip']"])
    assert spec.dataset == "imagenet@64"


@pytest.mark.parametrize(
    "overrides, expect",
    [
        (["prune.method='sfp'"], r"base.sfp_ratio \(None\) must equal prune.ratio \(0.5\).*set base.sfp_ratio = 0.5"),
        (["prune.method='sfp'", "base.sfp_ratio=0.3"], r"base.sfp_ratio \(0.3\) must equal prune.ratio \(0.5\)"),
        (["prune.method='sfp'", "base.sfp_ratio=0.5", "prune.ratios=[0.3, 0.5]"], "write one spec per ratio"),
    ],
)
def test_sfp_trains_its_base_at_the_ratio_it_prunes(overrides, expect):
    with pytest.raises(SpecError, match=expect):
        load_spec(TINY, ["model='resnet20'", *overrides])
    assert load_spec(TINY, ["model='resnet20'", "prune.method='sfp'", "base.sfp_ratio=0.5"]).base.sfp_ratio == 0.5


def test_options_at_their_defaults_leave_digests_as_they_were():
    """Specs written before classifier, bn_init, normalize, base.gamma and base.sfp_ratio existed keep their
    digests (and so their studies and checkpoints); setting one changes the digest and the base's."""
    # The base digest was printed by commit 0a2552c, before these fields existed; the spec digest was printed
    # again when tiny.toml's space and [select] changed (issue 24) and the default confidence became 0.975 (issue 25).
    tiny = load_spec(TINY)
    assert (tiny.digest(), tiny.base_digest()) == ("9c482504" + tiny.digest()[8:], "d4977e80" + tiny.base_digest()[8:])
    spelled = load_spec(TINY, ["classifier='default'", "bn_init=1.0", "normalize='split'", "base.gamma=0.1"])
    assert (spelled.digest(), spelled.base_digest()) == (tiny.digest(), tiny.base_digest())
    for override in ("classifier='linear'", "bn_init=0.5", "base.gamma=0.2"):
        changed = load_spec(TINY, [override])
        assert changed.digest() != tiny.digest() and changed.base_digest() != tiny.base_digest()


@pytest.mark.parametrize("url", ["mongodb://localhost/x", "optuna.db", "redis://h"])
def test_unknown_storage_scheme(url):
    with pytest.raises(SpecError, match="valid forms"):
        make_storage(url)


def test_bad_input_fails_before_any_training(tracking_uri, tmp_path, capsys):
    code = main(["study", TINY, "--set", "study.n_trials=0", "--workdir", str(tmp_path / "runs")])
    assert code == 2 and "study.n_trials" in capsys.readouterr().err
    code = main(["study", TINY, "--storage", "mongodb://x", "--workdir", str(tmp_path / "runs")])
    assert code == 2 and "valid forms" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    import mlflow

    assert mlflow.get_experiment_by_name("tiny") is None


def test_the_verdict_table_is_preregistered_in_the_digest_but_not_in_the_studies():
    base = load_spec(TINY)
    changed = load_spec(TINY, ["verdict.margin=1.0"])
    assert base.verdict.margin == 0.5 and base.verdict.margin_fraction == 0.005
    assert base.verdict.budgets == ("E", "B", "P") and base.verdict.confidence == 0.975  # one-sided alpha 0.025
    assert changed.digest() != base.digest()  # part of the spec's digest
    assert changed.study_fields() == base.study_fields()  # the studies continue; the report labels it post hoc
    with pytest.raises(SpecError, match="verdict.budgets"):
        load_spec(TINY, ["verdict.budgets=['Z']"])


@pytest.mark.parametrize(
    "name, side, proxy",
    [
        ("cifar10-l1-vgg16-a", 16, None),
        ("cifar100-slimming-densenet40-40", 16, None),
        ("imagenet-l1-resnet34-a", 16, 8),  # 224 px, proxy at 128: smoke at 16, proxy at 8
        ("cifar100-depgraph-resnet18", 32, None),  # a library model keeps up to 32 px: its size may matter
        ("imagenet-depgraph-deit-tiny", 32, 16),  # dynamic_img_size: its proxy shrinks too
        ("imagenet-depgraph-convnext-atto", 32, None),  # no 16-px image passes its stride 32: proxy at full size
        ("cifar100-arch-transferred-vgg19", 32, None),  # its pattern is keyed by the source's map sizes
    ],
)
def test_smoke_mode_trains_registry_models_at_16_px_and_library_models_at_up_to_32(name, side, proxy):
    from rethink.data import dataset_shape

    spec, smoke = load_spec(name), load_spec(name, smoke=True)
    shape = dataset_shape(smoke.dataset)
    assert shape.input_size == side and shape.num_classes == dataset_shape(spec.dataset).num_classes
    assert (smoke.proxy.resolution if smoke.proxy else None) == proxy


def test_calibration_images_reach_the_method_and_are_refused_where_none_are_read():
    from study.plan.arch import prune_config

    thinet = load_spec(TINY, ["prune.method=thinet"])
    assert prune_config(thinet).calibration_images == 256
    assert (
        prune_config(load_spec(TINY, ["prune.method=thinet", "prune.calibration_images=40"])).calibration_images == 40
    )
    assert load_spec(TINY, ["prune.method=thinet", "prune.calibration_images=256"]).digest() == thinet.digest()
    with pytest.raises(SpecError, match="calibration_images is for thinet"):
        load_spec(TINY, ["prune.calibration_images=40"])  # l1-norm reads no images
