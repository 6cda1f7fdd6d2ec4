"""Images resized to the model's size on the device (issue 39: a CIFAR study of a model made for 224 px):
`NAME@SIZE` keeps the images at their own size in memory and resizes every augmented batch; FLOPs, the
cost, the proxy and smoke mode all see the size the model runs at."""

import mlflow
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from conftest import REPO, TINY
from rethink.augment import DeviceLoader
from rethink.data import DataError, dataset_shape, load_dataset, split_resolution
from rethink.errors import ConfigError
from rethink.flops import forward_flops
from rethink.models.registry import build_model, default_spec
from rethink.proxy import proxy_cost, proxy_split
from rethink.reference import reference_train
from rethink.splits import normalization, train_val_split
from rethink.train import TrainConfig, make_loaders
from study.commands.cli import main
from study.plan.arch import check_model_fits
from study.plan.load import load_spec
from study.plan.rate import machine_rate
from study.plan.smoke import smoke_spec
from study.plan.spec import SpecError


def _npz(tmp_path, side=12, n=40, classes=4):
    rng = np.random.default_rng(0)
    path = tmp_path / "small@set.npz"  # an '@' in the path is not a size
    y = np.arange(n) % classes
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8),
        y_train=y,
        x_test=rng.integers(0, 256, (n // 2, side, side, 3), dtype=np.uint8),
        y_test=y[: n // 2],
    )
    return path


def test_a_size_after_any_dataset_name_resizes_images_in_memory(tmp_path):
    path = _npz(tmp_path)
    assert split_resolution("cifar100@224") == ("cifar100", 224)
    assert split_resolution(f"npz:{path}") == (f"npz:{path}", None)
    assert split_resolution(f"npz:{path}@40") == (f"npz:{path}", 40)
    ds = load_dataset(f"npz:{path}@40")
    assert ds.x_train.shape == (40, 3, 12, 12) and ds.resize == 40 and ds.input_size == 40  # stored small
    assert load_dataset(f"npz:{path}@12").resize == 0  # its own size: nothing to do
    shape = dataset_shape("cifar100@224")
    assert (shape.input_size, shape.n_train, shape.num_classes) == (224, 50_000, 100)
    assert normalization("liu2019", "cifar100@224") == normalization("liu2019", "cifar100")
    split = train_val_split(ds, 0.5, 0)
    assert split.resize == 40
    with pytest.raises(DataError, match="at least 8"):
        split_resolution("cifar10@4")


@pytest.mark.parametrize("size", [20, 8])  # enlarged (bilinear) and shrunk (antialiased)
def test_each_augmented_batch_is_the_one_at_the_images_size_resized(tmp_path, size):
    ds = load_dataset(f"npz:{_npz(tmp_path)}")
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    kw = dict(batch_size=16, augment="crop-flip-cutout", shuffle=True, seed=3)
    own = DeviceLoader(ds.x_train, ds.y_train, mean, std, **kw)
    resized = DeviceLoader(ds.x_train, ds.y_train, mean, std, resize=size, **kw)
    for (xa, ya), (xb, yb) in zip(own.epoch(2), resized.epoch(2), strict=True):
        assert xb.shape == (len(ya), 3, size, size) and torch.equal(ya, yb)
        torch.testing.assert_close(xb, TF.resize(xa, [size, size], antialias=True))  # torchvision's Resize
    again = resized.with_draws(8, "none")  # another run's draws keep the size
    assert next(again.epoch(0))[0].shape == (8, 3, size, size)


def test_both_loaders_yield_the_model_size_and_the_reference_loop_refuses_it(tmp_path):
    ds = load_dataset(f"npz:{_npz(tmp_path)}@24")
    split = train_val_split(ds, 0.5, 0)
    train, evaluation = make_loaders(split, TrainConfig(batch_size=8), torch.device("cpu"))
    assert next(train.epoch(0))[0].shape == (8, 3, 24, 24)
    assert next(evaluation.epoch(0))[0].shape[-2:] == (24, 24)
    model = build_model(default_spec("vgg11", ds.in_channels, ds.num_classes, ds.input_size, width_scale=0.25))
    with pytest.raises(ConfigError, match="@24"):
        reference_train(model, split, TrainConfig(epochs=1))


def test_a_proxy_resolution_lowers_the_resize_or_downsamples_below_the_images_size(tmp_path):
    ds = load_dataset(f"npz:{_npz(tmp_path)}@32")
    split = train_val_split(ds, 0.5, 0)
    lower = proxy_split(split, None, 16, seed=0)
    assert lower.x_train.shape[-1] == 12 and lower.resize == 16
    assert proxy_cost(split, lower, 32, 1.0) == pytest.approx(0.25)
    below = proxy_split(split, None, 8, seed=0)
    assert below.x_train.shape[-1] == 8 and below.resize == 0  # shrunk once in memory
    assert proxy_split(split, None, 64, seed=0).resize == 32  # never above the spec's size


def test_smoke_mode_stores_images_at_half_the_size_and_resizes_them():
    spec = load_spec(REPO / "study" / "specs" / "cifar100-depgraph-resnet18.toml")
    assert spec.dataset == "cifar100@224"
    stem, size = split_resolution(smoke_spec(spec).dataset)
    assert size == 32 and stem.startswith("synthetic:3,16,100,")
    assert load_dataset(smoke_spec(spec).dataset).x_train.shape[-1] == 16
    own = smoke_spec(spec.model_copy(update={"dataset": "cifar100"}))  # not resized: stored at the smoke size
    assert split_resolution(own.dataset)[1] is None and load_dataset(own.dataset).x_train.shape[-1] == 32


def test_the_train_command_runs_and_records_at_the_resized_size(tracking_uri):
    args = ["train", "--model", "vgg11", "--width-scale", "0.25", "--lr", "0.05", "--augment", "crop-flip"]
    for name in ("digits", "digits@16"):
        assert main(args + ["--dataset", name, "--epochs", "1", "--experiment", "rs"]) == 0
    runs = {r.data.params["dataset"]: r for r in mlflow.search_runs(experiment_names=["rs"], output_format="list")}
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    small, large = runs["digits"].data.metrics, runs["digits@16"].data.metrics
    arch = {side: default_spec("vgg11", 1, 10, side, width_scale=0.25) for side in (8, 16)}
    at = {side: forward_flops(build_model(spec), (1, side, side)) for side, spec in arch.items()}
    assert (small["flops_forward"], large["flops_forward"]) == (at[8], at[16]) and at[16] > at[8]
    assert large["train_flops"] / large["flops_forward"] == pytest.approx(small["train_flops"] / small["flops_forward"])


VIT_32 = ["dataset=synthetic:3,32,10", "model=timm:deit_tiny_patch16_224", "width_scale=1", "prune.method=depgraph"]
VIT_32 += ["prune.ratio=0.3"]


CAPPED = ["study.mode=capped", 'space.epochs={ of = "cap", low = 0.2 }']  # a proxy searches capped


def _vit_spec(*extra: str):
    return load_spec(TINY, [*VIT_32, *CAPPED, "model_args={ img_size = 32, patch_size = 4 }", *extra])


def test_a_proxy_resolution_the_model_cannot_take_is_refused_before_training():
    spec = _vit_spec("proxy={ resolution = 16 }")
    with pytest.raises(SpecError, match=r"proxy.resolution = 16: .* at layer 'patch_embed'.*dynamic_img_size"):
        check_model_fits(spec, dataset_shape(spec.dataset))
    check_model_fits(_vit_spec("proxy={ resolution = 32 }"), dataset_shape(spec.dataset))  # its own size: no proxy size
    dynamic = _vit_spec(
        "proxy={ resolution = 16 }", "model_args={ img_size = 32, patch_size = 4, dynamic_img_size = true }"
    )
    check_model_fits(dynamic, dataset_shape(spec.dataset))


def test_smoke_mode_runs_a_model_made_for_one_size_at_that_size():
    fixed = smoke_spec(load_spec(TINY, ["dataset=synthetic:3,48,10", *VIT_32[1:], "model_args={ img_size = 48 }"]))
    assert dataset_shape(fixed.dataset).input_size == 48  # a 16x16-patch ViT made for 48 px: not shrunk to 32
    free = smoke_spec(load_spec(TINY, ["dataset=synthetic:3,48,10", "model=timm:resnet18", *VIT_32[2:]]))
    assert dataset_shape(free.dataset).input_size == 32


def test_a_model_made_for_one_size_has_its_training_rate_timed_at_that_size():
    spec = load_spec(TINY, ["dataset=synthetic:3,128,10", *VIT_32[1:], "model_args={ img_size = 128, depth = 1 }"])
    assert machine_rate(spec, dataset_shape(spec.dataset)) > 0  # not at the 112 px larger models are timed at
