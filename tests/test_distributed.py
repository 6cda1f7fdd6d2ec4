"""One run on two processes (DistributedDataParallel, gloo on CPU) trains as one process does on the same
global batch: each process takes its share of every batch, gradients are averaged, epoch sums added."""

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from rethink import team
from rethink.data import load_dataset
from rethink.distributed import plain_batchnorm, plain_kind, sync_batchnorm
from rethink.history import Callback, StopTraining
from rethink.models import build_model, default_spec
from rethink.prune.masks import KeepMasked
from rethink.resume import EpochCheckpoint, prior_epochs
from rethink.runtime import ConfigError, Runtime
from rethink.splits import normalized, train_val_split
from rethink.train import TrainConfig, train

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


class StopAfterFirstEpoch(Callback):
    """A record-side callback (rank 0 only), as an Optuna prune is: the followers must stop with it."""

    def on_epoch_end(self, metrics, model):
        raise StopTraining


class FailOnRank1(Callback):
    """Runs in every process and fails in the follower only: rank 0 must raise, not wait for it."""

    every_process = True

    def after_step(self, model):
        if dist.get_rank() == 1:
            raise RuntimeError("follower fails")


def _follower_pids() -> list[int]:
    return [p.pid for p in team._team.procs] if team._team else []


@pytest.mark.slow  # spawns a follower process (about 14 s): with the process-level tests, off the default suite
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_a_run_asked_for_two_processes_trains_as_one_process_and_its_team_follows_each_run():
    """train(..., Runtime(processes=2)): this process leads, a spawned follower trains its share; the same
    losses and weights as one process. The team is reused by the next run, a stop asked by a rank-0 callback
    stops the follower too, callbacks that change weights run in both, and a follower's failure raises here."""
    split = _split()
    torch.manual_seed(0)
    alone = Plain()
    reference = train(alone, split, CONFIG, runtime=Runtime("cpu"))
    torch.manual_seed(0)
    led = Plain()
    history = train(led, split, CONFIG, runtime=Runtime("cpu", processes=2))
    losses = [m.train_loss for m in reference.epochs]
    assert [m.train_loss for m in history.epochs] == pytest.approx(losses, abs=TOLERANCE)
    assert [m.eval_acc for m in history.epochs] == pytest.approx([m.eval_acc for m in reference.epochs], abs=1e-9)
    assert history.images_seen == reference.images_seen
    for k, v in alone.state_dict().items():
        torch.testing.assert_close(led.state_dict()[k], v, atol=TOLERANCE, rtol=0)
    assert not dist.is_initialized() or dist.get_world_size() == 2
    followers = _follower_pids()
    assert len(followers) == 1 and followers[0] != os.getpid()

    # rank 0 stops after one epoch; the follower agrees, so the next run finds it waiting, not mid-epoch
    stopped = train(Plain(), split, CONFIG, [StopAfterFirstEpoch()], runtime=Runtime("cpu", processes=2))
    assert len(stopped.epochs) == 1 and stopped.stopped_early
    assert _follower_pids() == followers  # the same team

    # masks (a callback that changes weights) apply in every process: pruned weights stay zero in both
    torch.manual_seed(1)
    model = Plain()
    mask = (torch.rand_like(model.body[0].weight) > 0.5).float()
    masked = {"body.0.weight": mask}
    torch.manual_seed(1)
    twin = Plain()
    one = train(twin, split, CONFIG, [KeepMasked(masked)], runtime=Runtime("cpu"))
    two = train(model, split, CONFIG, [KeepMasked(masked)], runtime=Runtime("cpu", processes=2))
    assert bool((model.body[0].weight[mask == 0] == 0).all())
    assert [m.train_loss for m in two.epochs] == pytest.approx([m.train_loss for m in one.epochs], abs=TOLERANCE)
    torch.testing.assert_close(model.body[0].weight, twin.body[0].weight, atol=TOLERANCE, rtol=0)

    # a follower that fails: rank 0 raises (it does not wait out the timeout) and the team is gone
    with pytest.raises(Exception):  # noqa: B017 (gloo's error type depends on where the peer vanished)
        train(Plain(), split, CONFIG, [FailOnRank1()], runtime=Runtime("cpu", processes=2))
    assert team._team is None and not dist.is_initialized()
    again = train(Plain(), split, CONFIG, runtime=Runtime("cpu", processes=2))  # a fresh team
    assert len(again.epochs) == CONFIG.epochs and _follower_pids() != followers
    team.close_team()
    assert team._team is None and not dist.is_initialized()


class Killed(BaseException):
    """Stands for SIGKILL of the command after an epoch's snapshot."""


class KillAfterFirstEpoch(Callback):
    def on_epoch_end(self, metrics, model):
        raise Killed


@pytest.mark.slow  # two team starts (about 14 s): with the process-level tests, off the default suite
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_a_killed_distributed_run_resumes_from_rank_0s_snapshot_to_the_uninterrupted_result():
    """Rank 0 writes the per-epoch snapshot; the run killed after epoch 1 resumes on a fresh team (the
    snapshot reaches the follower with the model) and ends where one uninterrupted process ends."""
    split = _split()
    torch.manual_seed(0)
    alone = Plain()
    reference = train(alone, split, CONFIG, runtime=Runtime("cpu"))
    saved: list[dict] = []
    digest = CONFIG.digest()
    torch.manual_seed(0)
    with pytest.raises(Killed):
        checkpoint = EpochCheckpoint(saved.append, digest, every_s=0)
        train(Plain(), split, CONFIG, [checkpoint, KillAfterFirstEpoch()], runtime=Runtime("cpu", processes=2))
    assert team._team is None and len(saved) == 1 and saved[0]["epoch"] == 0
    resumed = Plain()
    prior, seen = prior_epochs(saved[0])
    history = train(
        resumed, split, CONFIG, [EpochCheckpoint(saved.append, digest, 0, prior, seen)],
        runtime=Runtime("cpu", processes=2), resume=saved[0],
    )  # fmt: skip
    team.close_team()
    assert [m.epoch for m in history.epochs] == [0, 1] and history.images_seen == reference.images_seen
    losses = [m.train_loss for m in reference.epochs]
    assert [m.train_loss for m in history.epochs] == pytest.approx(losses, abs=TOLERANCE)
    for k, v in alone.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=TOLERANCE, rtol=0)


def test_sync_batchnorm_is_undone_into_the_same_modules_and_tensors():
    """On CUDA a distributed run trains SyncBatchNorms; afterwards the model has its BatchNorm1d/2d back,
    holding the same parameter and buffer objects (pruning and checkpoints read them)."""
    model = build_model(default_spec("vgg11", 3, 10, 32, 0.25))  # BN2d in the convs, BN1d in the head
    kinds = {n: type(m) for n, m in model.named_modules()}
    tensors = {n: id(t) for n, t in [*model.named_parameters(), *model.named_buffers()]}
    converted = sync_batchnorm(model)
    assert converted and all(isinstance(model.get_submodule(n), nn.SyncBatchNorm) for n in converted)
    assert {plain_kind(model.get_submodule(n)) for n in converted} == {nn.BatchNorm1d, nn.BatchNorm2d}
    model.eval()
    plain_batchnorm(model, converted)
    assert {n: type(m) for n, m in model.named_modules()} == kinds
    assert {n: id(t) for n, t in [*model.named_parameters(), *model.named_buffers()]} == tensors
    assert not any(m.training for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"processes": 0}, "--gpus-per-trial 0"),
        ({"processes": 2, "compile": True}, "--compile"),
        ({"processes": 2, "device": "cuda:1"}, "--device cuda:1 with --gpus-per-trial 2: the processes take cuda:0..1"),
    ],
)
def test_a_bad_process_count_is_refused_naming_the_option(kwargs, names):
    with pytest.raises(ConfigError, match=names):
        Runtime(**kwargs)


def test_a_distributed_run_is_recorded_and_never_fused():
    runtime = Runtime("cpu", processes=2, fuse="parallel")
    assert runtime.describe() == "cpu fp32 ddp×2" and runtime.fusion(4) == "off"


LEADER = """
import dataclasses, sys, time
sys.path.insert(0, {tests!r})
from test_distributed import CONFIG, Plain, _split
from rethink import team
from rethink.history import Callback
from rethink.runtime import Runtime
from rethink.train import train

class Announce(Callback):
    def on_epoch_end(self, metrics, model):
        with open({out!r}, "w") as f:
            f.write(" ".join(str(p.pid) for p in team._team.procs))
        time.sleep(0.2)

train(Plain(), _split(), dataclasses.replace(CONFIG, epochs=10_000), [Announce()], runtime=Runtime("cpu", processes=2))
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[:2] == ["State:", "Z"] for line in f)  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_a_killed_leader_leaves_no_follower_behind(tmp_path):
    """SIGKILL on the command mid-run (no atexit, no cleanup): its follower sees the peer gone in the next
    collective and exits, rather than holding a core (or a GPU) until the 30-minute timeout."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "followers"
    script = LEADER.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not out.exists() or not out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "the run never reached its first epoch"
            time.sleep(0.1)
        (follower,) = [int(p) for p in out.read_text().split()]
        assert not _gone(follower)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while not _gone(follower):
            assert time.monotonic() < deadline, f"follower {follower} still alive 60 s after its leader was killed"
            time.sleep(0.2)
    finally:
        proc.kill()
