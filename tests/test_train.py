import contextlib
import math

import pytest
import torch

from rethink.budget import lr_at, milestone_epochs, scratch_b_epochs
from rethink.models import build_model, default_spec
from rethink.splits import train_val_split
from rethink.train import Callback, ConfigError, NonFiniteLoss, StopTraining, TrainConfig, seed_everything, train


def _run(digits, callbacks=(), **kw):
    split = train_val_split(digits, 0.15, seed=0)
    seed_everything(0)
    model = build_model(default_spec("vgg11", 1, 10, 8, 0.25))
    cfg = TrainConfig(**({"epochs": 8, "lr": 0.05, "augment": "none"} | kw))
    return model, train(model, split, cfg, list(callbacks))


def test_short_training_clearly_beats_chance(digits):
    _, history = _run(digits)
    assert len(history.epochs) == 8 and history.eval_name == "val"
    assert history.final.eval_acc > 0.85  # chance is 0.10
    assert history.final.train_loss < history.epochs[0].train_loss
    assert [e.lr for e in history.epochs] == pytest.approx([0.05] * 4 + [0.005] * 2 + [0.0005] * 2)
    assert history.images_seen == 8 * len(train_val_split(digits, 0.15, seed=0).y_train)


def test_same_seed_same_trajectory(digits):
    _, a = _run(digits, epochs=2, augment="crop-flip-cutout")
    _, b = _run(digits, epochs=2, augment="crop-flip-cutout")
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]


class _Poison(Callback):
    def after_step(self, model):
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_with_a_reason(digits):
    with pytest.raises(NonFiniteLoss, match="nan at epoch 0"):
        _run(digits, [_Poison()])


class _StopAfter(Callback):
    def on_epoch_end(self, metrics, model):
        if metrics.epoch == 2:
            raise StopTraining


def test_callback_can_stop_training(digits):
    _, history = _run(digits, [_StopAfter()])
    assert history.stopped_early and len(history.epochs) == 3


def test_paper_step_schedule():
    assert milestone_epochs(160) == [80, 120]
    assert [lr_at(e, 160, 0.1) for e in (0, 79, 80, 119, 120, 159)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    assert lr_at(0, 10, 0.1, "cosine") == pytest.approx(0.1)
    assert lr_at(5, 10, 0.1, "cosine") == pytest.approx(0.05)


def test_scratch_b_epochs_is_int_of_flops_ratio():
    assert scratch_b_epochs(160, 3.13e8, 2.06e8) == int(160 * 3.13 / 2.06)
    assert scratch_b_epochs(160, 1.0, 1.0) == 160


@pytest.mark.parametrize(
    "field, value",
    [("lr", -0.1), ("lr", math.nan), ("epochs", 0), ("momentum", 1.5), ("schedule", "linear"), ("augment", "mixup")],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_cuda_layout_options_train_on_cpu_too(digits):
    """channels_last and bf16 autocast (the CUDA defaults) change speed, not what is learned."""
    from rethink.train import Runtime

    split = train_val_split(digits, 0.15, seed=0)
    seed_everything(0)
    model = build_model(default_spec("vgg11", 1, 10, 8, 0.25))
    config = TrainConfig(epochs=6, lr=0.05, augment="none")
    history = train(model, split, config, runtime=Runtime("cpu", channels_last=True, bf16=True))
    assert history.final.eval_acc > 0.8
    assert next(model.parameters()).dtype == torch.float32  # autocast leaves the weights in fp32
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


class _Ends(Callback):
    def __init__(self):
        self.ended_with = None

    def on_train_end(self, history):
        self.ended_with = len(history.epochs)


@pytest.mark.parametrize("extra, epochs_recorded", [((), 8), ((_StopAfter(),), 3), ((_Poison(),), 0)])
def test_on_train_end_runs_however_training_stops(digits, extra, epochs_recorded):
    ends = _Ends()
    poisoned = any(isinstance(cb, _Poison) for cb in extra)
    with pytest.raises(NonFiniteLoss) if poisoned else contextlib.nullcontext():
        _run(digits, [*extra, ends])
    assert ends.ended_with == epochs_recorded


def test_runtime_defaults():
    from rethink.train import Runtime

    dev, channels_last, bf16 = Runtime("cpu").resolve()
    assert (dev.type, channels_last, bf16) == ("cpu", False, False)  # the CPU default: fp32, NCHW
    assert Runtime("cpu", bf16=True).resolve()[1:] == (False, True)  # NCHW: pruned widths run slower in NHWC
    assert Runtime("cpu", channels_last=True, bf16=True).resolve()[1:] == (True, True)
    assert Runtime("cpu").describe() == "cpu fp32"
    assert Runtime("cpu", channels_last=True, bf16=True, compile=True).describe() == "cpu bf16 channels_last compiled"


def test_compiled_step_trains_the_same_model_and_is_reused_across_trials(digits):
    """torch.compile changes speed, not the model; a second trial of the architecture compiles nothing new."""
    from torch._dynamo.utils import counters

    from rethink.train import Runtime

    split = train_val_split(digits, 0.2, seed=0)
    n = 640  # full batches only: one input shape, one graph
    split = type(split)(split.x_train[:n], split.y_train[:n], split.x_eval, split.y_eval, 10, "val")
    config = TrainConfig(epochs=2, batch_size=64, lr=0.01, augment="crop-flip", seed=1)  # not chaotic

    def trial(runtime):
        seed_everything(0)
        model = build_model(default_spec("resnet20", 1, 10, 8, 0.5))
        return train(model, split, config, runtime=runtime)

    torch._dynamo.reset()
    eager = trial(Runtime("cpu"))
    first = trial(Runtime("cpu", compile=True))
    graphs = counters["stats"]["unique_graphs"]
    second = trial(Runtime("cpu", compile=True))
    assert graphs >= 1 and counters["stats"]["unique_graphs"] == graphs  # reused, not recompiled
    losses = [e.train_loss for e in eager.epochs]
    assert [e.train_loss for e in first.epochs] == pytest.approx(losses, rel=2e-4)
    assert [e.train_loss for e in second.epochs] == [e.train_loss for e in first.epochs]
