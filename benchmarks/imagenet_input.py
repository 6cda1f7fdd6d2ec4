"""ImageNet input speed (issue 38, point 7): decode + augment images per second through the project's own
FolderLoader, on one CPU process (workers=0) and with every core of this machine, for the training transform
("train": RandomResizedCrop 224 + flip) and the evaluation one (resize 256, centre crop 224). The JPEGs are generated
at ImageNet's typical size (500×375, smooth content plus noise, quality 90; their mean file size is printed,
ImageNet's is about 110 kB). Prints one JSON object, with how many cores keep a GPU fed at `--gpu-images-per-s`
(give your GPU's ResNet-50 training rate; on a machine with CUDA the loader's hand-off to the GPU is timed too).

    python benchmarks/imagenet_input.py [--images 256] [--repeats 3] [--gpu-images-per-s 1000] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image

from rethink.imagefolder import IMAGENET_MEAN_STD, FolderLoader, scan_folder

RESULTS = Path(__file__).resolve().parent / "results" / "imagenet_input.json"


def make_jpegs(root: Path, n: int, classes: int = 8) -> float:
    """n JPEGs of 500×375 in `classes` class folders; returns their mean size in kB."""
    rng = np.random.default_rng(0)
    sizes = []
    for i in range(n):
        d = root / "train" / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        (root / "val" / f"c{i % classes}").mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        path = d / f"{i}.JPEG"
        Image.fromarray(pixels).save(path, quality=90)
        sizes.append(path.stat().st_size / 1000)
    for k in range(classes):  # val/ needs the same classes; one image each
        src = next((root / "train" / f"c{k}").iterdir())
        (root / "val" / f"c{k}" / src.name).write_bytes(src.read_bytes())
    return float(np.mean(sizes))


def rate(root: Path, workers: int, augment: str, repeats: int, device: str = "cpu") -> float:
    """Median images/s of one epoch over the folder (the first, which starts the workers, untimed)."""
    f = scan_folder(root)
    mean, std = (np.asarray(c, dtype=np.float32) for c in IMAGENET_MEAN_STD)
    loader = FolderLoader(f.train, f.y_train, mean, std, 64, 224, augment, True, device=device, workers=workers)
    times = []
    for epoch in range(repeats + 1):
        start = time.perf_counter()
        for x, _ in loader.epoch(epoch):
            if x.is_cuda:
                torch.cuda.synchronize()
        if epoch:
            times.append(time.perf_counter() - start)
    return len(f.y_train) / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gpu-images-per-s", type=float, default=1000.0, help="the GPU's ResNet-50 training rate")
    p.add_argument("--write", action="store_true", help=f"also write {RESULTS}")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(1)  # decoding is per process; one thread each, as in a DataLoader worker
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kb = make_jpegs(root, args.images)
        out = {
            "benchmark": "imagenet_input",
            "date": datetime.date.today().isoformat(),
            "device": f"{platform.machine()} CPU, {cores} cores" + (", CUDA" if torch.cuda.is_available() else ""),
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__},
            "images": args.images,
            "jpeg_kb_mean": round(kb, 1),
            "repeats": args.repeats,
        }
        per_core = {a: rate(root, 0, a, args.repeats) for a in ("crop-flip", "none")}
        out["images_per_s_one_core"] = {"train": per_core["crop-flip"], "eval": per_core["none"]}
        out["images_per_s_all_cores"] = {"train": rate(root, cores, "crop-flip", args.repeats)}
        if torch.cuda.is_available():
            out["images_per_s_to_gpu"] = rate(root, cores, "crop-flip", args.repeats, "cuda")
        out["gpu_images_per_s_assumed"] = args.gpu_images_per_s
        out["cores_to_feed_it"] = round(args.gpu_images_per_s / per_core["crop-flip"], 1)
    print(json.dumps(out, indent=1))
    if args.write:
        RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
