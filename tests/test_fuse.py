"""Runs trained as one group (rethink.fuse) equal the same runs trained alone, for every model family.

Tolerances, and why. `parallel` runs each job through the plain loop in its own thread, so at the same
intra-op thread count (1) it is bit-identical to training the job alone: the tests ask for equality.
`stacked` computes the same function with other kernels (N convs as one grouped conv, one SGD over
stacked tensors), so its fp32 rounding differs at ~1e-7 relative per step. SGD on these nets amplifies any
perturbation several times per step (measured: the unfused loop at 1 and at 2 threads, or at any two
rounding orders, parts by 1e-3 within ~10 steps at lr 0.05, where a ReLU or max-pool decision flips).
So stacked runs are compared step for step over a short horizon: in fp64 (the models cast their input
to float64), where rounding is 1e-16, losses within 1e-6 and weights within 1e-5 (relative to
max(1, |w|)) after 6 steps at lr 0.05-0.1; and in fp32 after one step within 1e-4 (a weight's gradient
sums 4,096 terms that largely cancel, in another order: ~1e-4 of the step; measured at most 1.4e-5)."""

from __future__ import annotations

import _thread
import threading

import pytest
import torch
from torch import nn

from rethink.fuse import fusion_plan, train_group
from rethink.models import MODELS, build_model, default_spec
from rethink.prune import KeepMasked, PruneConfig, prune
from rethink.prune.random_control import random_like
from rethink.prune.slimming import SparsityPenalty
from rethink.runtime import Runtime
from rethink.splits import Split, train_val_split
from rethink.stacked import StackedStep, stack_key
from rethink.train import (
    Callback,
    ConfigError,
    History,
    Job,
    NonFiniteLoss,
    PlainStep,
    StopTraining,
    TrainConfig,
    seed_everything,
    train_jobs,
)

FAMILIES = sorted({e.family: name for name, e in reversed(MODELS.items())}.items())  # the smallest of each
AUGMENT = ("crop-flip", "crop-flip-cutout", "none")  # each run its own policy


@pytest.fixture(scope="module")
def split(digits) -> Split:
    """3 steps of 64 images per epoch: short enough to compare trajectories step for step."""
    s = train_val_split(digits, 0.2, seed=0)
    return Split(s.x_train[:192], s.y_train[:192], s.x_eval[:128], s.y_eval[:128], 10, "val")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class F64(nn.Module):
    def forward(self, x):
        return x.double()


def make_jobs(model: str, n: int = 3, epochs: int = 2, fp64: bool = False, **config) -> list[Job]:
    spec = default_spec(model, 1, 10, 8, 0.25)
    jobs = []
    for s in range(n):
        seed_everything(s)
        net = build_model(spec)
        net = nn.Sequential(F64(), net.double()) if fp64 else net
        recipe = {"lr": 0.05 * (1 + s / 2), "schedule": "cosine", "augment": AUGMENT[s % 3], "seed": s} | config
        jobs.append(Job(net, TrainConfig(epochs=epochs, **recipe)))
    return jobs


def alone(jobs: list[Job], split: Split) -> list[History | BaseException]:
    return [train_jobs([job], split, Runtime("cpu"))[0] for job in jobs]


def weight_gap(a: nn.Module, b: nn.Module) -> float:
    """The largest difference of any float tensor of the two models, relative to max(1, its size)."""
    gaps = [
        ((p - q).abs().max() / q.abs().max().clamp_min(1.0)).item()
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        if p.is_floating_point()
    ]
    return max(gaps)


def losses(h: History) -> list[float]:
    return [e.train_loss for e in h.epochs]


@pytest.mark.parametrize("family, model", FAMILIES)
def test_parallel_runs_equal_each_run_trained_alone(family, model, split, one_thread):
    ref = make_jobs(model)
    expected = alone(ref, split)
    torch.set_num_threads(2)  # the group's budget: 3 runs side by side, one thread each
    jobs = make_jobs(model)
    got = train_group(jobs, split, Runtime("cpu", fuse="parallel"))
    assert torch.get_num_threads() == 2  # given back after the group
    for h, e, job, r in zip(got, expected, jobs, ref, strict=True):
        assert losses(h) == losses(e) and [m.eval_acc for m in h.epochs] == [m.eval_acc for m in e.epochs]
        state, expected_state = job.model.state_dict(), r.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in expected_state.items())


def recording(engine):
    """The engine, recording the labels of every batch it steps, per run: the data each run sees."""

    class Recorded(engine):
        seen: list[list[torch.Tensor]] = []

        def __call__(self, xs, ys):
            Recorded.seen.append([y.clone() for y in ys])
            return super().__call__(xs, ys)

    return Recorded


@pytest.mark.parametrize("family, model", FAMILIES)
def test_stacked_runs_match_each_run_trained_alone_in_fp64(family, model, split, one_thread):
    ref = make_jobs(model, fp64=True)
    plain = [recording(PlainStep) for _ in ref]
    expected = [train_jobs([job], split, Runtime("cpu"), engine=rec)[0] for job, rec in zip(ref, plain, strict=True)]
    jobs = make_jobs(model, fp64=True)
    stacked = recording(StackedStep)
    got = train_jobs(jobs, split, Runtime("cpu"), engine=stacked)
    for k, (h, e) in enumerate(zip(got, expected, strict=True)):
        assert len(stacked.seen) == len(plain[k].seen) == 6
        assert all(torch.equal(s[k], p[0]) for s, p in zip(stacked.seen, plain[k].seen, strict=True))  # same batches
        assert losses(h) == pytest.approx(losses(e), rel=1e-6)
        assert [m.eval_loss for m in h.epochs] == pytest.approx([m.eval_loss for m in e.epochs], rel=1e-6)
        assert weight_gap(jobs[k].model, ref[k].model) < 1e-5
        assert jobs[k].model[1].training is False  # evaluated last: each run's own module, in eval mode


@pytest.mark.parametrize("family, model", FAMILIES)
def test_stacked_step_matches_the_plain_step_in_fp32(family, model, split, one_thread):
    one = Split(split.x_train[:64], split.y_train[:64], split.x_eval, split.y_eval, 10, "val")
    ref = make_jobs(model, epochs=1)
    alone(ref, one)
    jobs = make_jobs(model, epochs=1)
    train_jobs(jobs, one, Runtime("cpu"), engine=StackedStep)
    for job, r in zip(jobs, ref, strict=True):
        assert weight_gap(job.model, r.model) < 1e-4
        buffers = dict(job.model.named_buffers())
        assert all(torch.equal(buffers[k], v) for k, v in r.model.named_buffers() if "num_batches" in k)


def test_stacked_runs_keep_their_own_masks_at_zero(split, one_thread):
    """Unstructured masks, a different one per run, re-applied after every step (KeepMasked)."""
    jobs = make_jobs("vgg11", fp64=True)
    ref = make_jobs("vgg11", fp64=True)
    masks = []
    for k, (job, r) in enumerate(zip(jobs, ref, strict=True)):
        g = torch.Generator().manual_seed(k)
        masks.append(
            {n: torch.rand(p.shape, generator=g) > 0.5 for n, p in job.model.named_parameters() if p.dim() == 4}
        )
        job.callbacks, r.callbacks = [KeepMasked(masks[k])], [KeepMasked(masks[k])]
    alone(ref, split)
    train_jobs(jobs, split, Runtime("cpu"), engine=StackedStep)
    for job, r, mask in zip(jobs, ref, masks, strict=True):
        params = dict(job.model.named_parameters())
        assert all(bool((params[n][~m] == 0).all()) for n, m in mask.items())
        assert sum(int((params[n] != 0).sum()) for n in mask) == sum(int(m.sum()) for m in mask.values())
        assert weight_gap(job.model, r.model) < 1e-5


def selected_jobs(n: int = 3) -> list[Job]:
    """PreResNet-20s pruned as Network Slimming prunes them (channel selections), at one set of widths with
    other channels per run: the random control at the widths slimming gives run 0's net."""
    spec = default_spec("preresnet20", 1, 10, 8, 0.25)
    nets = []
    for s in range(n):
        seed_everything(s)
        nets.append(build_model(spec))
    reference = prune(nets[0], spec, PruneConfig("slimming", 0.3))
    jobs = []
    for s, net in enumerate(nets):
        chosen = random_like(net, spec, reference, PruneConfig("random", seed=s, like="slimming")).model
        config = TrainConfig(epochs=2, lr=0.05, augment=AUGMENT[s], seed=s)
        jobs.append(Job(nn.Sequential(F64(), chosen.double()), config, [SparsityPenalty(1e-2)]))
    return jobs


def test_stacked_runs_with_their_own_channel_selections_and_slimming_sparsity(split, one_thread):
    """Each run's own channel selection, and slimming's L1 on BN scales added to its own gradients."""
    jobs, ref, without = selected_jobs(), selected_jobs(), selected_jobs()
    indices = [[b for k, b in j.model.named_buffers() if k.endswith("index")] for j in jobs]
    assert not torch.equal(indices[0][0], indices[1][0])  # other channels per run, at one width
    assert len({stack_key(j) for j in jobs}) == 1
    for job in without:
        job.callbacks = []
    alone(ref, split)
    alone(without, split)
    train_jobs(jobs, split, Runtime("cpu"), engine=StackedStep)
    for job, r, w in zip(jobs, ref, without, strict=True):
        assert weight_gap(job.model, r.model) < 1e-5
        assert weight_gap(job.model, w.model) > 1e-4  # the penalty acted, on this run's own gammas


class Poison(Callback):
    def after_step(self, model):
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))


class StopAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, metrics, model):
        if metrics.epoch == self.epoch:
            raise StopTraining


@pytest.mark.parametrize("fuse", ["stacked", "parallel"])
def test_one_run_that_diverges_or_stops_leaves_the_others_as_they_would_be(fuse, split, one_thread):
    torch.set_num_threads(2 if fuse == "parallel" else 1)
    jobs = make_jobs("resnet20", n=3, epochs=3, fp64=True)
    ref = make_jobs("resnet20", n=3, epochs=3, fp64=True)
    jobs[0].callbacks, jobs[1].callbacks = [Poison()], [StopAt(0)]
    ref[1].callbacks = [StopAt(0)]
    torch.set_num_threads(1)
    expected = alone(ref[1:], split)
    torch.set_num_threads(2 if fuse == "parallel" else 1)
    done: list[int] = []
    got = train_group(jobs, split, Runtime("cpu", fuse=fuse), on_done=lambda k, _: done.append(k))
    assert sorted(done) == [0, 1, 2]  # each job ends once
    assert isinstance(got[0], NonFiniteLoss) and got[0].epoch == 0
    assert got[1].stopped_early and len(got[1].epochs) == 1 and len(got[2].epochs) == 3
    for k, e in zip((1, 2), expected, strict=True):
        assert losses(got[k]) == pytest.approx(losses(e), rel=1e-6)
        assert weight_gap(jobs[k].model, ref[k].model) < 1e-5


class Ends(Callback):
    def __init__(self, started: set):
        self.started, self.ended = started, False

    def on_train_start(self, model, optimizer):
        self.started.add(id(self))

    def on_train_end(self, history):
        self.ended = True


class InterruptOnce(Callback):
    """Sends Ctrl-C to the main thread once every run of the group has started training."""

    def __init__(self, started: set, n: int):
        self.started, self.n, self.sent = started, n, False

    def after_step(self, model):
        if len(self.started) == self.n and not self.sent:
            self.sent = True
            _thread.interrupt_main()


def test_ctrl_c_stops_a_parallel_group_and_every_run_ends(split, one_thread, ctrl_c_handled):
    torch.set_num_threads(2)
    jobs = make_jobs("vgg11", n=3, epochs=200)
    started: set[int] = set()
    ends = [Ends(started) for _ in jobs]
    for job, e in zip(jobs, ends, strict=True):
        job.callbacks = [e]
    jobs[0].callbacks.append(InterruptOnce(started, len(jobs)))
    done = []
    with pytest.raises(KeyboardInterrupt):
        train_group(jobs, split, Runtime("cpu", fuse="parallel"), on_done=lambda k, o: done.append(k))
    assert all(e.ended for e in ends) and done == []  # every run ended its callbacks, none finished
    assert not [t for t in threading.enumerate() if t.name.startswith("rethink-lane")]
    assert torch.get_num_threads() == 2


def test_what_auto_means_and_what_a_plan_says(split):
    assert Runtime("cpu").fusion(1) == "off"
    assert Runtime("cpu", fuse="off").fusion(5) == "off"
    assert Runtime("cpu", compile=True).fusion(5) == "off"  # compiled graphs are not shared across threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert Runtime("cpu").fusion(3) == "parallel"
        torch.set_num_threads(1)
        assert Runtime("cpu").fusion(3) == "off"  # one thread: nothing to run side by side
    finally:
        torch.set_num_threads(before)
    jobs = make_jobs("vgg11", n=2) + make_jobs("vgg11", n=1, epochs=3)  # the third has other epochs
    assert fusion_plan(jobs, Runtime("cpu", fuse="stacked")) == [("stacked", 2), ("stacked", 2), ("off", 1)]
    assert fusion_plan(jobs, Runtime("cpu", fuse="parallel")) == [("parallel", 3)] * 3
    assert Runtime("cpu").describe(("parallel", 3)) == "cpu fp32 fused:parallel×3"
    assert Runtime("cpu").describe(("off", 1)) == "cpu fp32 unfused"
    with pytest.raises(ConfigError, match="--fuse parallel does not combine with --compile on"):
        Runtime("cpu", compile=True, fuse="parallel")
    with pytest.raises(ConfigError, match="--fuse 'merge'"):
        Runtime("cpu", fuse="merge")


class WithUnused(nn.Module):
    """A linear classifier and a parameter the forward never uses (SGD must leave it alone)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10).double()
        self.unused = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x):
        return self.fc(x.double().flatten(1))


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_stacked_update_is_torch_sgd_with_a_learning_rate_per_run(nesterov):
    torch.manual_seed(0)
    models = [WithUnused() for _ in range(3)]
    copies = [WithUnused() for _ in range(3)]
    for m, c in zip(models, copies, strict=True):
        c.load_state_dict(m.state_dict())
    config = TrainConfig(epochs=1, momentum=0.9, nesterov=nesterov, weight_decay=1e-2)
    step = StackedStep([Job(m, config) for m in models], torch.device("cpu"), Runtime("cpu"))
    sgd = [torch.optim.SGD(c.parameters(), 0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-2) for c in copies]
    for t in range(4):
        lrs = [0.1 * (k + 1) / (t + 1) for k in range(3)]
        xs = [torch.randn(8, 1, 8, 8) for _ in range(3)]
        ys = [torch.randint(0, 10, (8,)) for _ in range(3)]
        step.set_lr(lrs)
        step(xs, ys)
        step.step()
        for c, opt, lr, x, y in zip(copies, sgd, lrs, xs, ys, strict=True):
            opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            nn.functional.cross_entropy(c(x).float(), y).backward()  # the loss in fp32, as both steps take it
            opt.step()
    for m, c in zip(models, copies, strict=True):
        assert torch.allclose(m.fc.weight, c.fc.weight, rtol=1e-12, atol=1e-14)
        assert torch.equal(m.unused, c.unused) and torch.equal(m.unused, torch.ones(3, dtype=torch.float64))
    step.finish()
    assert all(m.fc.weight.untyped_storage().data_ptr() != models[0].fc.weight.untyped_storage().data_ptr()
               for m in models[1:])  # fmt: skip
