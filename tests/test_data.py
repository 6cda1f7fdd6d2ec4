import pickle

import numpy as np
import pytest
import torch

from rethink.augment import AUGMENTATIONS, DeviceLoader, cutout_mask, random_crop
from rethink.data import DataError, load_dataset
from rethink.splits import channel_stats, normalized, train_test, train_val_split
from rethink.train import TrainConfig, make_loaders


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    for name in ("digits", "cifar10", "cifar100", "npz:PATH"):
        assert name in str(e.value)


def test_digits_is_embedded_and_complete(digits):
    assert digits.x_train.dtype == np.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert digits.num_classes == 10 and digits.x_train.max() == 255


def _write_cifar(root, name, n_train, n_test, rng):
    """A tiny file set in the CIFAR python format: pickled dicts with CHW-flat uint8 rows."""
    if name == "cifar10":
        folder, key = root / "cifar-10-batches-py", "labels"
        files = {f"data_batch_{i}": n_train for i in range(1, 6)} | {"test_batch": n_test}
        meta = ("batches.meta", "label_names", [f"c{i}" for i in range(10)])
        classes = 10
    else:
        folder, key = root / "cifar-100-python", "fine_labels"
        files, classes = {"train": n_train, "test": n_test}, 100
        meta = ("meta", "fine_label_names", [f"c{i}" for i in range(100)])
    folder.mkdir(parents=True)
    written = {}
    for fname, n in files.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, n).tolist()
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": data, key: labels}, f)
        written[fname] = (data, labels)
    with open(folder / meta[0], "wb") as f:
        pickle.dump({meta[1]: meta[2]}, f)
    return written, classes


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_format(tmp_path, name):
    rng = np.random.default_rng(0)
    written, classes = _write_cifar(tmp_path, name, 7, 5, rng)
    ds = load_dataset(name, root=tmp_path)
    n_train = 35 if name == "cifar10" else 7
    assert ds.x_train.shape == (n_train, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    first = next(iter(written.values()))
    np.testing.assert_array_equal(ds.x_train[0], first[0][0].reshape(3, 32, 32))
    assert ds.y_train[:7].tolist() == first[1]
    assert len(ds.label_names) == classes and ds.label_names[3] == "c3"


def test_cifar_missing_without_download_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "--download" in msg


def _npz(path, **over):
    rng = np.random.default_rng(1)
    arrays = dict(
        x_train=rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8),
        y_train=np.arange(40) % 4,
        x_test=rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8),
        y_test=np.arange(8) % 4,
    )
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


def test_npz_hwc_becomes_chw(tmp_path):
    arrays = _npz(tmp_path / "d.npz")
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.x_train.shape == (40, 3, 12, 12) and ds.num_classes == 4
    np.testing.assert_array_equal(ds.x_train[5, 2], arrays["x_train"][5, :, :, 2])


def test_npz_grayscale(tmp_path):
    _npz(tmp_path / "g.npz", x_train=np.zeros((40, 9, 9), np.uint8), x_test=np.zeros((8, 9, 9), np.uint8))
    assert load_dataset(f"npz:{tmp_path / 'g.npz'}").x_train.shape == (40, 1, 9, 9)


@pytest.mark.parametrize(
    "over, key",
    [
        (dict(y_test=None), "y_test"),
        (dict(x_train=np.zeros((40, 12, 12, 3), np.float32)), "x_train"),
        (dict(y_train=np.arange(39) % 4), "y_train"),
    ],
)
def test_npz_errors_name_the_key(tmp_path, over, key):
    _npz(tmp_path / "bad.npz", **over)
    with pytest.raises(DataError, match=key):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_shared_cifar5k_loads(cifar5k):
    ds = load_dataset(f"npz:{cifar5k}")
    assert ds.x_train.shape == (5085, 3, 32, 32) and ds.x_test.shape == (1017, 3, 32, 32)
    assert ds.label_names[0] == "airplane"
    mean, _ = channel_stats(ds.x_train)
    np.testing.assert_allclose(mean, [0.494, 0.485, 0.448], atol=2e-3)


def test_split_is_stratified_and_seeded(digits):
    split = train_val_split(digits, 0.2, seed=3)
    counts_tr = np.bincount(split.y_train, minlength=10)
    counts_val = np.bincount(split.y_eval, minlength=10)
    expected_val = np.bincount(digits.y_train, minlength=10) * 0.2
    assert np.all(np.abs(counts_val - expected_val) <= 1)
    assert counts_tr.sum() + counts_val.sum() == len(digits.y_train)
    again = train_val_split(digits, 0.2, seed=3)
    other = train_val_split(digits, 0.2, seed=4)
    np.testing.assert_array_equal(split.y_eval, again.y_eval)
    assert not np.array_equal(split.x_eval, other.x_eval)


def _loader(x, augment, seed=0, shuffle=True, batch=16):
    mean, std = channel_stats(x)
    return DeviceLoader(x, np.arange(len(x)) % 10, mean, std, batch, augment, shuffle=shuffle, seed=seed)


@pytest.mark.parametrize("augment", AUGMENTATIONS)
def test_augmentation_shapes_and_determinism(augment):
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    a = list(_loader(x, augment).epoch(1))
    b = list(_loader(x, augment).epoch(1))
    c = list(_loader(x, augment, seed=1).epoch(1))
    assert [xb.shape for xb, _ in a] == [(16, 3, 32, 32)] * 3 + [(2, 3, 32, 32)]
    assert all(xb.dtype == torch.float32 for xb, _ in a)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    next_epoch = next(iter(_loader(x, augment).epoch(2)))[0]
    assert not torch.equal(a[0][0], next_epoch)


def test_no_augmentation_is_plain_normalization():
    x = np.random.default_rng(0).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    loader = _loader(x, "none", shuffle=False, batch=20)
    xb, yb = next(iter(loader.epoch(0)))
    mean, std = channel_stats(x)
    expected = (x / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(xb.numpy(), expected, atol=1e-5)
    assert yb.tolist() == (np.arange(20) % 10).tolist()


@pytest.mark.parametrize("name, mean, std", [("liu2019", 0.4914, 0.2023), ("he2018", 125.3 / 255, 63.0 / 255)])
def test_official_normalization_constants_normalize_the_batches(name, mean, std, cifar_made):
    """The paper's code normalizes CIFAR with fixed constants (l1-norm, slimming, weight-level: 0.4914...;
    soft-filter-pruning: 125.3/255...); a split carrying them feeds them to the loader instead of its own."""
    ds = load_dataset(f"npz:{cifar_made}")
    split = normalized(train_test(ds), name, ds.name)
    assert split.train_stats[0][0] == pytest.approx(mean) and split.train_stats[1][0] == pytest.approx(std)
    xb, _ = next(iter(make_loaders(split, TrainConfig(batch_size=8, augment="none"), torch.device("cpu"))[1].epoch(0)))
    expected = (split.x_eval[:8, 0] / 255.0 - mean) / std
    np.testing.assert_allclose(xb[:8, 0].numpy(), expected, atol=1e-5)
    assert train_test(ds).train_stats[0][0] != pytest.approx(mean, abs=1e-3)  # the default: the split's own
    with pytest.raises(DataError, match="not 'digits'; use normalize"):
        normalized(train_test(load_dataset("digits")), name, "digits")


def test_random_crop_is_zero_padded_shift():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6) + 1
    out = random_crop(x, torch.tensor([[0, 0], [4, 2]]), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert torch.equal(out[0], padded[0, :, 0:6, 0:6]) and (out[0, :, :2, :] == 0).all()
    assert torch.equal(out[1], padded[1, :, 4:10, 2:8])


def test_flip_policy_flips_about_half():
    x = np.random.default_rng(0).integers(0, 256, (400, 1, 8, 8), dtype=np.uint8)
    plain = next(iter(_loader(x, "none", shuffle=False, batch=400).epoch(0)))[0]
    flipped = next(iter(_loader(x, "flip", shuffle=False, batch=400).epoch(0)))[0]
    same = (plain == flipped).flatten(1).all(1)
    mirrored = (plain.flip(-1) == flipped).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 150 < int(mirrored.sum()) < 250


def test_cutout_mask_zeroes_a_square():
    mask = cutout_mask(torch.tensor([[16, 16], [0, 0]]), 32, 16)
    assert mask.shape == (2, 1, 32, 32)
    assert int((~mask[0]).sum()) == 256 and int((~mask[1]).sum()) == 64  # clipped at the corner


def test_the_shared_file_is_read_only_through_the_fixture_that_skips_without_it():
    """A user's clone has no ../shared: a test that opened the file directly would fail there, not skip."""
    from conftest import REPO

    direct = [
        f"{p.name}:{i}"
        for p in sorted((REPO / "tests").glob("*.py"))
        if p.name != "conftest.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if ("CIFAR5K" in line or "cifar10-5k" in line or "shared/data" in line) and "noqa: shared-ok" not in line
    ]
    assert direct == [], f"use the cifar5k fixture (or images the test makes) instead: {direct}"
