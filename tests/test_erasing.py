"""Random erasing (DeiT's and ConvNeXt's `reprob`, timm's mode "pixel"): its boxes follow timm's RandomErasing,
every draw comes from (seed, epoch, batch), pixels outside the boxes are untouched, and a run trains on it."""

import random

import numpy as np
import pytest
import torch

from rethink.erasing import BatchEraser, batch_eraser
from rethink.models import build_model, default_spec
from rethink.reference import reference_train
from rethink.splits import Split, train_val_split
from rethink.train import ConfigError, TrainConfig, seed_everything, train

N, SIDE = 20_000, 32


def _erased(x: torch.Tensor) -> torch.Tensor:
    """Per image of a zero batch, the share of its pixels a box replaced."""
    return (x != 0).any(1).flatten(1).float().mean(1)


def test_the_boxes_follow_timms_random_erasing():
    timm_erasing = pytest.importorskip("timm.data.random_erasing", reason="timm (the 'models' extra) is not installed")
    random.seed(0)
    torch.manual_seed(0)
    theirs = _erased(timm_erasing.RandomErasing(0.25, mode="pixel", device="cpu")(torch.zeros(N, 3, SIDE, SIDE)))
    ours = torch.cat([_erased(BatchEraser(0.25, 0)(torch.zeros(1000, 3, SIDE, SIDE), 0, i)) for i in range(N // 1000)])
    # the share of images erased: 0.25 each (binomial standard error 0.003 on 20,000)
    assert abs(float((ours > 0).float().mean()) - 0.25) < 0.015
    assert abs(float((ours > 0).float().mean()) - float((theirs > 0).float().mean())) < 0.015
    # the area of an erased box: its mean and spread as timm's (each mean's standard error about 0.0014)
    a, b = ours[ours > 0], theirs[theirs > 0]
    assert float(a.min()) > 0.02 * 0.8 and float(a.max()) < 1 / 3 * 1.3
    assert abs(float(a.mean()) - float(b.mean())) < 0.01 and abs(float(a.std()) - float(b.std())) < 0.01


def test_the_draws_come_from_seed_epoch_and_batch_and_only_the_boxes_change():
    x = torch.randn(64, 3, 16, 16)
    eraser = BatchEraser(0.5, seed=3)
    out = eraser(x, epoch=2, i=5)
    assert torch.equal(out, eraser(x, epoch=2, i=5))
    assert not torch.equal(out, eraser(x, epoch=3, i=5)) and not torch.equal(out, BatchEraser(0.5, 4)(x, 2, 5))
    boxes = eraser.boxes(2, 5, 64, 16, 16)
    inside = torch.zeros(64, 1, 16, 16, dtype=torch.bool)
    for k, (t, left, h, w) in enumerate(boxes):
        inside[k, :, t : t + h, left : left + w] = True
    inside = inside.expand_as(x)
    assert torch.equal(out[~inside], x[~inside])  # the rest of every image untouched
    noise = out[inside]
    assert 10 < (boxes[:, 2] > 0).sum() < 54 and abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1) < 0.05
    assert batch_eraser(0.0, 0) is None


@pytest.fixture(scope="module")
def split(digits) -> Split:
    s = train_val_split(digits, 0.2, seed=0)
    return Split(s.x_train[:256], s.y_train[:256], s.x_eval[:128], s.y_eval[:128], 10, "val")


def test_a_run_trains_on_erased_images_and_repeats_exactly(split):
    def run(**kw):
        seed_everything(0)
        net = build_model(default_spec("resnet20", 1, 10, 8, 0.25))
        return train(net, split, TrainConfig(epochs=2, lr=0.05, augment="flip", **kw))

    erased, again, plain = run(erasing=1.0), run(erasing=1.0), run()
    assert [e.train_loss for e in erased.epochs] == [e.train_loss for e in again.epochs]
    assert erased.epochs[0].train_loss != plain.epochs[0].train_loss
    assert "erasing" not in TrainConfig().to_dict()  # earlier digests stay
    assert TrainConfig(erasing=0.25).digest() != TrainConfig().digest()
    with pytest.raises(ConfigError, match="erasing"):
        TrainConfig(erasing=1.5)
    with pytest.raises(ConfigError, match="no random erasing"):
        reference_train(build_model(default_spec("resnet20", 1, 10, 8, 0.25)), split, TrainConfig(erasing=0.25))


def test_a_spec_gives_its_erasing_to_every_arm():
    from conftest import TINY
    from study.plan.load import load_spec
    from study.plan.spec import SpecError

    spec = load_spec(TINY, ["base.erasing=0.25"])
    assert spec.base.train_config(1).erasing == 0.25
    assert load_spec(TINY).digest() != spec.digest() and np.isclose(spec.base.erasing, 0.25)
    with pytest.raises(SpecError, match="erasing"):
        load_spec(TINY, ["base.erasing=2"])
