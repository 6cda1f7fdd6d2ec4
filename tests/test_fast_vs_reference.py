"""The fast loop changes speed, never the recipe: same batches and the same training as the reference."""

import copy

import numpy as np
import pytest
import torch

from rethink.augment import AUGMENTATIONS, DeviceLoader
from rethink.models import build_model, default_spec
from rethink.reference import reference_loader, reference_train
from rethink.splits import Split, channel_stats, train_val_split
from rethink.train import TrainConfig, seed_everything, train


@pytest.mark.parametrize("augment", AUGMENTATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_same_batches_for_the_same_seed(augment, channels):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (70, channels, 16, 16), dtype=np.uint8)
    y = rng.integers(0, 10, 70)
    split = Split(x, y, x[:5], y[:5], 10, "val")
    config = TrainConfig(batch_size=32, augment=augment, seed=5)
    mean, std = channel_stats(x)
    fast = DeviceLoader(x, y, mean, std, 32, augment, shuffle=True, seed=5)
    for epoch in (0, 3):
        ref = list(reference_loader(split, config, epoch))
        got = list(fast.epoch(epoch))
        assert len(ref) == len(got) == 3
        for (xr, yr), (xf, yf) in zip(ref, got, strict=True):
            assert torch.equal(yr, yf)
            torch.testing.assert_close(xf, xr, atol=1e-5, rtol=1e-5)


def test_same_loss_trajectory_in_fp32(digits):
    split = train_val_split(digits, 0.2, 0)
    config = TrainConfig(epochs=2, batch_size=64, lr=0.01, augment="crop-flip", seed=1)  # lr 0.05 is chaotic
    seed_everything(0)
    model = build_model(default_spec("resnet20", 1, 10, 8, 0.5))
    twin = copy.deepcopy(model)
    fast = train(model, split, config)
    ref = reference_train(twin, split, config)
    fast_loss = [e.train_loss for e in fast.epochs]
    ref_loss = [e.train_loss for e in ref.epochs]
    assert fast_loss == pytest.approx(ref_loss, rel=1e-4)
    assert [e.train_acc for e in fast.epochs] == pytest.approx([e.train_acc for e in ref.epochs], abs=0.01)
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=2e-3, rtol=2e-2, msg=name)
