"""One run on two processes (DistributedDataParallel, gloo on CPU) trains as one process does on the same
global batch: each process takes its share of every batch, gradients are averaged, epoch sums added."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rethink.data import load_dataset, normalized, train_val_split
from rethink.distributed import DDPStep
from rethink.train import Job, TrainConfig, train, train_jobs

# Batch 48 over 1,437 images: the last batch (45) splits 23/22, so unequal shares are covered too.
CONFIG = TrainConfig(epochs=2, batch_size=48, lr=0.05, augment="crop-flip", schedule="cosine", seed=5)
TOLERANCE = 1e-5  # float sums in another order: the losses and weights agree to this (absolute)


class Plain(nn.Module):
    """No BN: each process's BN would see only its share (SyncBatchNorm, CUDA only, closes that gap)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def _split():
    ds = load_dataset("digits")
    return normalized(train_val_split(ds, 0.2, 0), "split", ds.name)


class CountingDDPStep(DDPStep):
    """DDPStep that counts the images this process trained on (its share, not the global batch)."""

    seen = 0

    def __call__(self, xs, ys):
        CountingDDPStep.seen += len(ys[0])
        return super().__call__(xs, ys)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = Plain()
        (history,) = train_jobs([Job(model, CONFIG)], _split(), engine=CountingDDPStep)
        torch.save(CountingDDPStep.seen, f"{out}.seen{rank}")
        if rank == 0:
            torch.save({"losses": [m.train_loss for m in history.epochs], "accs": [m.train_acc for m in history.epochs],
                        "eval": [m.eval_acc for m in history.epochs], "seen": history.images_seen,
                        "state": model.state_dict()}, out)  # fmt: skip
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_processes_train_as_one_process_on_the_same_global_batch(tmp_path):
    torch.manual_seed(0)
    alone = Plain()
    reference = train(alone, _split(), CONFIG)
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert got["seen"] == reference.images_seen  # the global batch's images, counted once
    shares = [torch.load(f"{out}.seen{r}", weights_only=True) for r in (0, 1)]
    assert sum(shares) == reference.images_seen and abs(shares[0] - shares[1]) <= CONFIG.epochs * 30  # halves
    assert got["losses"] == pytest.approx([m.train_loss for m in reference.epochs], abs=TOLERANCE)
    assert got["accs"] == pytest.approx([m.train_acc for m in reference.epochs], abs=1e-9)
    assert got["eval"] == pytest.approx([m.eval_acc for m in reference.epochs], abs=1e-9)
    for k, v in alone.state_dict().items():
        torch.testing.assert_close(got["state"][k], v, atol=TOLERANCE, rtol=0)


def test_the_shares_of_a_batch_are_disjoint_halves_of_the_one_process_batch():
    from rethink.train import make_loaders

    split = _split()
    full, _ = make_loaders(split, CONFIG, torch.device("cpu"))
    halves = [make_loaders(split, CONFIG, torch.device("cpu"))[0] for _ in range(2)]
    for r, loader in enumerate(halves):
        loader.shard = (r, 2)
    for (x, y), (x0, y0), (x1, y1) in zip(full.epoch(1), halves[0].epoch(1), halves[1].epoch(1), strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert abs(len(y0) - len(y1)) <= 1
