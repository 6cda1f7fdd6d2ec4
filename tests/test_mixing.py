"""Mixup and CutMix (rethink.mixing): the mixed batch and its targets, draws that depend on (seed, epoch)
only, and runs that mix the same way alone, side by side, stacked and after a resume."""

import numpy as np
import pytest
import torch
from torch import nn

from rethink.fuse import train_group
from rethink.mixing import BatchMixer, EpochMix, batch_mixer, cutmix
from rethink.models import build_model, default_spec
from rethink.runtime import Runtime
from rethink.splits import Split, train_val_split
from rethink.stacked import StackedStep
from rethink.train import Job, TrainConfig, seed_everything, train, train_jobs


def _batch(n=6, c=3, side=8, classes=5):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, c, side, side, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_mixup_blends_each_image_with_the_reversed_batch_and_its_targets_alike():
    x, y = _batch()
    mixer = BatchMixer(0.8, 0.0, 5, seed=0)
    draws = EpochMix(np.array([0.7]), np.array([False]), np.zeros((1, 2)))
    xm, ym = mixer(x, y, draws, 0)
    assert torch.allclose(xm, 0.7 * x + 0.3 * x.flip(0))
    expected = torch.zeros(6, 5)
    expected[torch.arange(6), y] += 0.7
    expected[torch.arange(6), y.flip(0)] += 0.3
    assert torch.allclose(ym, expected) and torch.allclose(ym.sum(1), torch.ones(6))


@pytest.mark.parametrize("lam, centre", [(0.75, (0.5, 0.5)), (0.4, (0.05, 0.9)), (0.99, (0.3, 0.6))])
def test_cutmix_pastes_a_box_of_the_reversed_batch_and_lambda_is_what_it_left(lam, centre):
    x, _ = _batch(side=16)
    xm, kept = cutmix(x, lam, np.array(centre))
    pasted = (xm != x).any(0).any(0)  # (H, W): where any image changed
    from_reverse = (xm == x.flip(0)).all(0).all(0)
    assert torch.equal(pasted & ~from_reverse, torch.zeros_like(pasted))  # every changed pixel is the reverse's
    rows, cols = pasted.nonzero(as_tuple=True)
    area = 0 if len(rows) == 0 else (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert area == pasted.sum()  # one rectangle
    assert kept == pytest.approx(1 - float(area) / 256)
    assert kept >= lam - 1e-9  # clipping at the border only shrinks the box


def test_the_draws_come_from_seed_and_epoch_alone_and_follow_beta_and_even_odds():
    both = BatchMixer(0.8, 1.0, 10, seed=3)
    a, b = both.epoch(2, 4000), both.epoch(2, 4000)
    assert np.array_equal(a.lam, b.lam) and np.array_equal(a.cut, b.cut) and np.array_equal(a.centre, b.centre)
    assert not np.array_equal(both.epoch(3, 4000).lam, a.lam)
    assert not np.array_equal(BatchMixer(0.8, 1.0, 10, seed=4).epoch(2, 4000).lam, a.lam)
    assert 0.45 < a.cut.mean() < 0.55  # one of the two at even odds
    assert abs(a.lam.mean() - 0.5) < 0.02  # Beta(α, α) is symmetric about 1/2
    # Beta(1, 1) is uniform (variance 1/12); Beta(0.8, 0.8) has variance 1/(4 (2α + 1)) = 0.0962
    assert a.lam[a.cut].var() == pytest.approx(1 / 12, abs=0.01)
    assert a.lam[~a.cut].var() == pytest.approx(1 / (4 * 2.6), abs=0.01)
    assert not BatchMixer(0.8, 0.0, 10, 0).epoch(0, 50).cut.any()
    assert BatchMixer(0.0, 1.0, 10, 0).epoch(0, 50).cut.all()
    assert batch_mixer(0.0, 0.0, 10, 0) is None


@pytest.fixture(scope="module")
def split(digits) -> Split:
    s = train_val_split(digits, 0.2, seed=0)
    return Split(s.x_train[:256], s.y_train[:256], s.x_eval[:128], s.y_eval[:128], 10, "val")


def _jobs(n=2, epochs=2, fp64=False, **mix):
    jobs = []
    for s in range(n):
        seed_everything(s)
        net = build_model(default_spec("resnet20", 1, 10, 8, 0.25))
        if fp64:
            net = nn.Sequential(_F64(), net.double())
        config = TrainConfig(epochs=epochs, lr=0.05, schedule="cosine", augment="flip", seed=s, **mix)
        jobs.append(Job(net, config))
    return jobs


class _F64(nn.Module):
    def forward(self, x):
        return x.double()


def test_mixed_runs_learn_and_repeat_exactly(split):
    def run(**mix):
        (job,) = _jobs(1, 6, **mix)
        return train(job.model, split, job.config)

    mixed, again, plain = run(mixup=0.8, cutmix=1.0), run(mixup=0.8, cutmix=1.0), run()
    assert [e.train_loss for e in mixed.epochs] == [e.train_loss for e in again.epochs]
    assert mixed.final.eval_acc > 0.5  # chance is 0.10; mixing slows a short run, it does not stop it
    assert mixed.epochs[0].train_loss != plain.epochs[0].train_loss  # the mixing changed what was trained on


def test_mixed_runs_side_by_side_equal_each_alone(split):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref, jobs = _jobs(mixup=0.8), _jobs(mixup=0.8)
        expected = [train_jobs([j], split, Runtime("cpu"))[0] for j in ref]
        got = train_group(jobs, split, Runtime("cpu", fuse="parallel"))
        for h, e, j, r in zip(got, expected, jobs, ref, strict=True):
            assert [m.train_loss for m in h.epochs] == [m.train_loss for m in e.epochs]
            theirs = r.model.state_dict()
            assert all(torch.equal(v, theirs[k]) for k, v in j.model.state_dict().items())
        stacked_ref, stacked = _jobs(fp64=True, cutmix=1.0), _jobs(fp64=True, cutmix=1.0)
        alone = [train_jobs([j], split, Runtime("cpu"))[0] for j in stacked_ref]
        together = train_jobs(stacked, split, Runtime("cpu"), engine=StackedStep)
        for h, e in zip(together, alone, strict=True):
            assert [m.train_loss for m in h.epochs] == pytest.approx([m.train_loss for m in e.epochs], rel=1e-6)
    finally:
        torch.set_num_threads(before)
