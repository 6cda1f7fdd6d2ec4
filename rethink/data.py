"""Datasets: a registry of names, the loaders of their formats (CIFAR's python format, npz, digits, synthetic
images, image folders) and their shapes; rethink.splits splits and normalizes them. Image folders (ImageNet)
keep file paths in the x arrays and load through rethink.imagefolder; batches come from rethink.augment
(arrays) or rethink.imagefolder."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DataError  # noqa: F401 (rethink.data.DataError: where it was first)
from .imagefolder import FolderError, scan_folder

FOLDER = "imagefolder:"  # imagefolder:PATH[@SIZE]: train/ and val/ class folders of images, SIZE the crop (224)
# NAME@SIZE for images in memory (cifar100@224, npz:PATH@64): kept at their size, resized to SIZE on the device
# after augmentation (bilinear; antialiased when shrinking), so a model made for another size sees its own
IMAGENET_SIZE = 224


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset: uint8 images N×C×H×W and int64 labels, with its official test split; for an
    image folder, x holds the files' paths and `resolution` the crop the models see; for images in memory,
    `resize` is the side they are resized to on the device (`cifar100@224`), 0 to keep theirs."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    label_names: tuple[str, ...] = ()
    resolution: int = 0  # image folders only
    resize: int = 0  # images in memory only

    @property
    def in_channels(self) -> int:
        return 3 if self.resolution else int(self.x_train.shape[1])

    @property
    def input_size(self) -> int:
        return self.resolution or self.resize or int(self.x_train.shape[2])


@dataclass(frozen=True)
class DatasetShape:
    """What a dataset is without its images: sizes of its splits, image shape, classes."""

    name: str
    n_train: int
    n_test: int
    in_channels: int
    input_size: int
    num_classes: int


# The registered datasets whose sizes are known without their files (the official splits).
KNOWN_SHAPES = {
    "cifar10": DatasetShape("cifar10", 50_000, 10_000, 3, 32, 10),
    "cifar100": DatasetShape("cifar100", 50_000, 10_000, 3, 32, 100),
    "imagenet": DatasetShape("imagenet", 1_281_167, 50_000, 3, IMAGENET_SIZE, 1000),  # ILSVRC-2012 train / val
}
SYNTHETIC = "synthetic:"  # synthetic:C,SIZE,CLASSES[,N_TRAIN,N_TEST]: random images, for smoke runs
SYNTHETIC_PRESENT = 10  # the classes a synthetic dataset's labels use (all of them when fewer)


def is_folder(name: str) -> bool:
    """An image-folder dataset name: `imagenet[@SIZE]` or `imagefolder:PATH[@SIZE]`."""
    stem = name.rpartition("@")[0] or name
    return stem == "imagenet" or name.startswith(FOLDER)


def folder_path(name: str, root: str | Path = "data") -> Path:
    stem = name.rpartition("@")[0] or name
    return Path(root) / "imagenet" if stem == "imagenet" else Path(stem[len(FOLDER) :])


def split_resolution(name: str) -> tuple[str, int | None]:
    """`imagenet@128` -> ("imagenet", 128): an image folder read at another resolution than 224, or images in
    memory resized on the device (`cifar100@224`). A name without a numeric `@SIZE` is returned whole."""
    stem, at, size = name.rpartition("@")
    folder = stem == "imagenet" or stem.startswith(FOLDER)
    if not at or not (folder or size.isdigit()):
        return name, None
    if not size.isdigit() or int(size) < 8:
        raise DataError(f"dataset {name!r}: the resolution after '@' must be an integer of at least 8, e.g. @224")
    return stem, int(size)


def dataset_shape(name: str, root: str | Path = "data") -> DatasetShape:
    """The shape of a dataset by name, without loading CIFAR or ImageNet (their sizes are known); others are
    read (an image folder is listed, not decoded)."""
    stem, size = split_resolution(name)
    if stem in KNOWN_SHAPES:
        known = KNOWN_SHAPES[stem]
        return known if size is None else replace(known, name=name, input_size=size)
    ds = load_dataset(name, root)
    return DatasetShape(name, len(ds.y_train), len(ds.y_test), ds.in_channels, ds.input_size, ds.num_classes)


def synthetic_name(shape: DatasetShape, n_train: int, n_test: int) -> str:
    return f"{SYNTHETIC}{shape.in_channels},{shape.input_size},{shape.num_classes},{n_train},{n_test}"


def load_synthetic(spec: str) -> Dataset:
    """Random uint8 images with a class-dependent brightness (so a model can learn a little), labels
    cycling through the first `SYNTHETIC_PRESENT` classes (the model still has every class's output, so a
    100-class spec smoke-runs on as few images as a 10-class one); seeded by the name, the same every time."""
    try:
        fields = [int(v) for v in spec.split(",")]
        c, size, k = fields[:3]
        present = min(k, SYNTHETIC_PRESENT)
        n_train, n_test = fields[3:] if len(fields) == 5 else (8 * present, 4 * present)
        if len(fields) not in (3, 5) or min(c, size, k, n_train, n_test) < 1:
            raise ValueError
    except ValueError:
        raise DataError(
            f"dataset {SYNTHETIC}{spec!r}: give {SYNTHETIC}CHANNELS,SIZE,CLASSES[,N_TRAIN,N_TEST] (positive "
            f"integers), e.g. {SYNTHETIC}3,32,10"
        ) from None
    rng = np.random.default_rng([c, size, k, n_train, n_test])
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % present
        level = (255 * (y + 0.5) / present).astype(np.float64)[:, None, None, None]
        x = np.clip(level + rng.normal(0, 40, (n, c, size, size)), 0, 255).astype(np.uint8)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.transpose(0, 2, 3, 1), y.astype(np.int64)
    return from_arrays(f"{SYNTHETIC}{spec}", arrays, (), source="synthetic", num_classes=k)


DATASETS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str):
    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        DATASETS[name] = fn
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(DATASETS) + ["npz:PATH", f"{FOLDER}PATH[@SIZE]", f"{SYNTHETIC}C,SIZE,CLASSES"]


def load_dataset(name: str, root: str | Path = "data", download: bool = False) -> Dataset:
    """Load a registered dataset by name, `npz:PATH` for any npz in the cifar10-5k format, or an image folder
    (`imagefolder:PATH`, `imagenet` = ROOT/imagenet) at its resolution (`@SIZE`, default 224)."""
    if is_folder(name):
        return load_folder(name, folder_path(name, root), split_resolution(name)[1] or IMAGENET_SIZE)
    stem, size = split_resolution(name)
    if size is not None:
        ds = load_dataset(stem, root, download)
        return ds if size == ds.input_size else replace(ds, name=name, resize=size)
    if name.startswith("npz:"):
        return load_npz(name[4:])
    if name.startswith(SYNTHETIC):
        return load_synthetic(name[len(SYNTHETIC) :])
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(dataset_names())}")
    return DATASETS[name](root=Path(root), download=download)


def _to_nchw(x: np.ndarray, key: str, source: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise DataError(f"{source}: {key!r} has shape {x.shape}; expected N×H×W or N×H×W×C with C in (1, 3)")


def from_arrays(
    name: str, arrays: dict[str, np.ndarray], label_names=(), source: str | None = None, num_classes: int | None = None
) -> Dataset:
    """Validate x_train/y_train/x_test/y_test arrays (uint8 images, integer labels) into a Dataset. The class
    count is `num_classes` (a registered dataset's), else the number of label names, else inferred."""
    source = source or name
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in arrays:
            raise DataError(f"{source}: missing key {key!r}; an npz needs x_train, y_train, x_test, y_test")
    for key in ("x_train", "x_test"):
        if arrays[key].dtype != np.uint8:
            raise DataError(f"{source}: {key!r} has dtype {arrays[key].dtype}; images must be uint8 (0-255)")
    for key in ("y_train", "y_test"):
        if not np.issubdtype(arrays[key].dtype, np.integer) or arrays[key].ndim != 1:
            raise DataError(f"{source}: {key!r} must be a 1-D integer array, got {arrays[key].dtype}")
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise DataError(f"{source}: 'x_{split}' has {nx} images but 'y_{split}' has {ny} labels")
        if nx == 0:
            raise DataError(f"{source}: 'x_{split}' is empty; both splits need images")
    x_train = _to_nchw(arrays["x_train"], "x_train", source)
    x_test = _to_nchw(arrays["x_test"], "x_test", source)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{source}: 'x_train' images {x_train.shape[1:]} differ from 'x_test' {x_test.shape[1:]}")
    if x_train.shape[2] != x_train.shape[3]:
        raise DataError(
            f"{source}: images are {x_train.shape[2]}×{x_train.shape[3]}; the CIFAR models need square images "
            f"(crop or pad them to H×H)"
        )
    y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    label_names = tuple(str(s) for s in label_names)
    num_classes = _check_labels(y_train, y_test, source, num_classes or len(label_names) or None)
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes, label_names)


def _check_labels(y_train: np.ndarray, y_test: np.ndarray, source: str, known: int | None) -> int:
    """Labels in 0..K-1. K known (a registered dataset, or label names): every label below it. K inferred:
    every class 0..K-1 occurs in training and the test set has no other, so no hole widens the head."""
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0:
            raise DataError(f"{source}: {key!r} has negative labels (e.g. {int(y.min())}); labels must be 0..K-1")
        if known is not None and y.max() >= known:
            raise DataError(
                f"{source}: {key!r} has label {int(y.max())}, but there are {known} classes (0..{known - 1})"
            )
    if known is not None:
        return known
    seen = np.unique(y_train)
    k = int(seen.max()) + 1
    if len(seen) != k:
        holes = sorted(set(range(k)) - set(seen.tolist()))
        raise DataError(
            f"{source}: 'y_train' labels are not 0..{k - 1}: {len(holes)} value(s) never occur (e.g. {holes[:3]}); "
            f"relabel the classes as 0..K-1, or add label_names"
        )
    unseen = sorted(set(np.unique(y_test).tolist()) - set(seen.tolist()))
    if unseen:
        raise DataError(f"{source}: 'y_test' has label(s) {unseen[:5]} that 'y_train' never has")
    return k


def load_npz(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"npz dataset file not found: {path} (give npz:PATH with an existing file)")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single array, not an npz archive with x_train, y_train, x_test, y_test")
        with f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:  # pickled data: object arrays, or not numpy at all; pickle is never allowed
        if isinstance(e, DataError):
            raise
        why = "it holds object arrays" if "Object arrays" in str(e) else "numpy reads it as pickled data"
        raise DataError(
            f"{path}: not an npz of plain arrays ({why}; pickles are never loaded); save uint8 images and "
            f"integer labels with numpy.savez"
        ) from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable npz archive ({str(e).splitlines()[0]})") from None
    return from_arrays(f"npz:{path}", arrays, arrays.get("label_names", ()), source=str(path))


def load_folder(name: str, folder: Path, resolution: int) -> Dataset:
    """An image folder's file lists (nothing decoded): `val/` is the test set, as CIFAR's test split."""
    try:
        f = scan_folder(folder)
    except FolderError as e:
        raise DataError(str(e)) from None
    return Dataset(name, f.train, f.y_train, f.val, f.y_val, len(f.classes), f.classes, resolution)


@register_dataset("digits")
def load_digits(root: Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1,797 images; no download), with a fixed stratified 20% test split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    arrays = {"x_train": x[idx_train], "y_train": y[idx_train], "x_test": x[idx_test], "y_test": y[idx_test]}
    return from_arrays("digits", arrays, [str(i) for i in range(10)])


# The CIFAR python format: pickled dicts of 'data' (N×3072 uint8, CHW-flat) and labels.
_CIFAR = {
    "cifar10": dict(
        folder="cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        label_key="labels",
        meta=("batches.meta", "label_names"),
        torchvision="CIFAR10",
        classes=10,
    ),
    "cifar100": dict(
        folder="cifar-100-python",
        train=["train"],
        test=["test"],
        label_key="fine_labels",
        meta=("meta", "fine_label_names"),
        torchvision="CIFAR100",
        classes=100,
    ),
}


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(entry[label_key], dtype=np.int64)


def load_cifar(name: str, root: Path, download: bool = False) -> Dataset:
    """CIFAR-10/100 from `root` in the python format; torchvision downloads it when allowed."""
    info = _CIFAR[name]
    folder = Path(root) / info["folder"]
    needed = [folder / f for f in info["train"] + info["test"]]
    if not all(p.is_file() for p in needed):
        if not download:
            missing = [p.name for p in needed if not p.is_file()]
            raise DataError(
                f"{name} not found: looked in {folder} and missing {', '.join(missing)}. "
                f"Pass --download (needs internet) or put the python-format batches there "
                f"(or use --data-root to point at them)."
            )
        import torchvision

        getattr(torchvision.datasets, info["torchvision"])(str(root), train=True, download=True)
        getattr(torchvision.datasets, info["torchvision"])(str(root), train=False, download=True)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        batches = [_read_cifar_batch(folder / f, info["label_key"]) for f in info[split]]
        arrays[f"x_{split}"] = np.concatenate([x for x, _ in batches]).transpose(0, 2, 3, 1)  # to NHWC
        arrays[f"y_{split}"] = np.concatenate([y for _, y in batches])
    names: list[str] = []
    meta_file, meta_key = info["meta"]
    if (folder / meta_file).is_file():
        with open(folder / meta_file, "rb") as f:
            names = list(pickle.load(f, encoding="latin1").get(meta_key, []))
    return from_arrays(name, arrays, names, source=str(folder), num_classes=info["classes"])


@register_dataset("cifar10")
def load_cifar10(root: Path, download: bool = False) -> Dataset:
    return load_cifar("cifar10", root, download)


@register_dataset("cifar100")
def load_cifar100(root: Path, download: bool = False) -> Dataset:
    return load_cifar("cifar100", root, download)
