"""A spec's cost before it runs: the compute of every stage from the architectures and the layout alone,
`rethink study SPEC --dry-run` (no training, no run, no file left behind but the timed rate it keeps), and the
`rethink specs` catalogue."""

import math
import re

import pytest
import torch

from conftest import TINY
from rethink.data import DatasetShape, dataset_shape, load_dataset
from rethink.flops import forward_flops
from rethink.models.registry import build_model
from study.commands.cli import main
from study.commands.specs import shipped
from study.plan.arch import base_arch
from study.plan.cost import spec_cost, split_sizes
from study.plan.layout import baseline_trials, study_arms
from study.plan.load import load_spec


def test_cifar_shapes_are_known_without_files_and_others_are_read(tmp_path):
    assert dataset_shape("cifar100", tmp_path) == DatasetShape("cifar100", 50_000, 10_000, 3, 32, 100)
    digits = load_dataset("digits")
    shape = dataset_shape("digits")
    assert (shape.n_train, shape.n_test, shape.input_size) == (len(digits.y_train), len(digits.y_test), 8)


def test_each_stage_is_what_its_runs_would_train():
    spec = load_spec("quick")
    cost = spec_cost(spec)
    data = dataset_shape("digits")
    base = forward_flops(build_model(base_arch(spec, data)), (1, 8, 8))
    n_search, n_final = split_sizes(spec, data)
    assert n_search + math.ceil(spec.val_fraction * data.n_train) == data.n_train == n_final
    stages = {s.name: s for s in cost.stages}
    assert cost.base_macs == base and 0 < cost.pruned_macs < base
    assert stages["base (search split)"].macs == pytest.approx(3 * base * n_search * spec.base.epochs)
    assert stages["final: bases (train+val)"].macs == pytest.approx(3 * base * n_final * 8 * spec.final.seeds)
    assert stages["confirmation bases"].runs == spec.select.n_bases
    assert stages["confirmation bases"].macs == pytest.approx(spec.select.n_bases * cost.budgets.base_train)
    for key in study_arms(spec):  # a capped study never costs more than its trials at their cap
        extra = baseline_trials(spec, key, cost.budgets, spec.base.train_config(0))
        stage = stages[f"study {key}"]
        assert stage.runs == spec.study.n_trials + len(extra)
        cap = {"E": cost.budgets.train_e, "B": cost.budgets.train_b, "P": cost.budgets.pipeline_p}[key[-1]]
        assert 0 < stage.macs <= stage.runs * cap * 1.0001
    assert cost.total == pytest.approx(sum(s.macs for s in cost.stages))


def test_the_cost_follows_the_spec_and_its_overrides():
    spec = load_spec("cifar10-l1-resnet56-a")
    more = load_spec("cifar10-l1-resnet56-a", ["study.n_trials=48"])
    none = load_spec("cifar10-l1-resnet56-a", ["select.bases=0"])
    a, b, c = spec_cost(spec), spec_cost(more), spec_cost(none)
    assert a.exact and b.total > a.total
    assert "confirmation bases" in {s.name for s in a.stages} and "confirmation bases" not in {s.name for s in c.stages}
    assert a.total - c.total == pytest.approx(spec.select.n_bases * a.budgets.base_train)
    assert not spec_cost(load_spec("cifar10-slimming-vgg19-70")).exact  # widths come from the trained base
    scratch_only = spec_cost(load_spec(TINY, ["study.arms=['scratch-e', 'scratch-b']"]))
    assert "confirmation bases" not in {s.name for s in scratch_only.stages}  # nothing inherits a base


def test_dry_run_prints_the_cost_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.manual_seed(0)
    assert main(["study", "cifar10-l1-resnet56-a", "--dry-run", "--set", "final.seeds=3"]) == 0
    out = capsys.readouterr().out
    assert "final: bases (train+val) | 3 " in out and "total:" in out and "on this machine" in out
    assert "A100" in out and "cifar10-airbench" in out  # the GPU rate's source
    assert "--gpus-per-trial" not in out
    assert list(tmp_path.iterdir()) == []  # no store, no checkpoint, no report
    args = ["study", "cifar10-l1-resnet56-a", "--dry-run", "--set", "final.seeds=3", "--gpus-per-trial", "4"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    (total,) = [line for line in lines if line.startswith("total:")]
    (wall,) = [line for line in lines if line.startswith("with --gpus-per-trial 4: at least")]
    one_gpu = _seconds(re.search(r"at least ([\d.]+ \w+) on one A100", total).group(1))
    four = _seconds(re.search(r"at least ([\d.]+ \w+) of wall time", wall).group(1))
    assert four == pytest.approx(one_gpu / 4, rel=0.05)  # the same GPU time over four GPUs, rounded as printed


def _seconds(text: str) -> float:
    """A duration as `duration` prints it ("42 min", "3.1 h", "2.5 days") in seconds."""
    value, unit = text.split()
    return float(value) * {"s": 1, "min": 60, "h": 3600, "days": 86400}[unit]


def test_a_bad_spec_is_refused_before_anything_with_the_field_named(capsys):
    cases = [
        ("cifar10-l1-vgg16-a", ["model=resnet57"], "model: unknown model 'resnet57'"),
        ("cifar10-slimming-vgg19-70", ["prune.ratio=1.5"], "prune.ratio: Input should be less than 1"),
        ("cifar10-slimming-vgg19-70", ["study.arms=['finetune', 'lottery']"], "study.arms: the lottery arm needs"),
    ]
    for spec, sets, says in cases:
        args = [x for s in sets for x in ("--set", s)]
        assert main(["study", spec, *args, "--dry-run"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err


@pytest.mark.smoke  # every shipped spec's cost, each model's training rate timed: in the smoke step (100 s)
def test_the_catalogue_lists_every_shipped_spec_with_its_cost_and_each_can_reach_its_budgets(capsys, tmp_path):
    """A search that cannot reach a budget is refused once the base is pruned (after hours of training): the
    catalogue's checks say so for every shipped spec with the architecture the cost computes (exact for
    predefined methods; for slimming, whose widths come from the trained scales, the estimate says nothing)."""
    assert main(["specs", "--csv", str(tmp_path / "specs.csv")]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "specs.csv")
    assert sorted(table.spec) == shipped()
    assert (table["training MACs"].astype(float) > 0).all()
    assert table["here"].notna().all() and table["1 GPU (at least)"].notna().all()
    assert set(table.published) <= {"missing"} | {f"{n} numbers" for n in range(1, 10)}
    unreachable = table[(table.checks != "ok") & ~table.method.str.startswith("slimming")]
    assert unreachable[["spec", "checks"]].values.tolist() == []


def test_estimating_a_cost_leaves_the_callers_random_state_alone():
    state = torch.get_rng_state()
    spec = load_spec("quick", ["seed=7"])
    cost = spec_cost(spec)
    from study.plan.rate import machine_rate

    assert machine_rate(spec, cost.data) > 0
    assert torch.equal(torch.get_rng_state(), state)


def test_a_timed_rate_is_kept_on_disk_per_machine_setting_and_read_back(tmp_path, monkeypatch):
    """`rethink specs` and --dry-run time each model once per machine setting; a later process reads it."""
    import json

    from study.plan import rate

    monkeypatch.setenv("RETHINK_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(rate, "_RATES", {})
    spec = load_spec("quick")
    data = spec_cost(spec).data
    timed = rate.machine_rate(spec, data)
    path = tmp_path / "machine_rates.json"
    stored = json.loads(path.read_text())
    [entry] = stored.values()
    assert entry["rate"] == timed and entry["model"] == spec.model and entry["threads"] == torch.get_num_threads()
    entry["rate"] = 123.0  # what a later process finds there, it uses instead of timing again
    path.write_text(json.dumps(stored))
    monkeypatch.setattr(rate, "_RATES", {})
    assert rate.machine_rate(spec, data) == 123.0
    monkeypatch.setattr(rate, "_RATES", {})
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        assert rate.machine_rate(spec, data) != 123.0  # another thread count is another setting: timed
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads(path.read_text())) == 2
    ten, hundred = load_spec("cifar10-magnitude-vgg19-30"), load_spec("cifar100-magnitude-vgg19").levels()[0]
    on_ten = rate.machine_rate(ten, spec_cost(ten).data)
    assert rate.machine_rate(hundred, spec_cost(hundred).data) == on_ten  # one model, other classes: one timing
    assert len(json.loads(path.read_text())) == 3
    monkeypatch.setenv("RETHINK_CACHE_DIR", "")  # set empty: timed every time, nothing read or written
    monkeypatch.setattr(rate, "_RATES", {})
    assert rate.machine_rate(spec, data) != 123.0 and rate.rates_file() is None
    assert len(json.loads(path.read_text())) == 3


def test_a_cost_is_kept_on_disk_by_content_and_computed_anew_when_spec_or_code_changes(tmp_path, monkeypatch):
    """A second look (another process: nothing in memory) reads a spec's cost instead of building its models;
    another spec content, or a change to the code that computes costs, computes it anew (and the entries of
    the old code go); RETHINK_CACHE_DIR set empty keeps nothing."""
    import json

    from study.plan import cost, kept

    monkeypatch.setenv("RETHINK_CACHE_DIR", str(tmp_path))
    builds = []

    def counted(arch):
        builds.append(arch.model)
        return build_model(arch)

    monkeypatch.setattr(cost, "build_model", counted)
    monkeypatch.setattr(cost, "_COSTS", {})
    spec = load_spec("cifar10-l1-resnet56-a")
    first = spec_cost(spec)
    path = tmp_path / "costs.json"
    [entry] = json.loads(path.read_text()).values()
    assert entry["spec"] == spec.name and entry["code"] == kept.code_digest() and builds == ["resnet56"]

    monkeypatch.setattr(cost, "_COSTS", {})  # a later process
    assert spec_cost(spec) == first and builds == ["resnet56"]  # read back whole, nothing built
    seeded = load_spec("cifar10-l1-resnet56-a", ["seed=1"])
    assert spec_cost(seeded).total == first.total and len(builds) == 2  # another content: computed
    assert len(json.loads(path.read_text())) == 2

    monkeypatch.setattr(cost, "code_digest", lambda: "changed-code")
    monkeypatch.setattr(cost, "_COSTS", {})
    assert spec_cost(spec) == first and len(builds) == 3  # the code changed: computed again
    assert [e["code"] for e in json.loads(path.read_text()).values()] == ["changed-code"]  # the old ones gone

    monkeypatch.setenv("RETHINK_CACHE_DIR", "")
    monkeypatch.setattr(cost, "_COSTS", {})
    assert spec_cost(seeded) == spec_cost(seeded) and len(builds) == 4  # computed, kept in memory only
    assert len(json.loads(path.read_text())) == 1


def test_an_estimate_from_a_shared_base_is_the_one_a_fresh_build_gives():
    """`shared_bases` copies one untrained base per architecture and seed: the same weights, masks and random
    state after it as a fresh build; nothing is kept once it closes."""
    from study.plan import cost

    spec = load_spec("cifar10-magnitude-vgg19-30")  # magnitude: the estimate reads the init's weights
    data = spec_cost(spec).data
    _, _, fresh = cost.untrained_pruned(spec, data)
    after = torch.get_rng_state()
    with cost.shared_bases():
        for _ in range(2):  # built, then copied
            _, _, shared = cost.untrained_pruned(spec, data)
            assert torch.equal(torch.get_rng_state(), after)
            for name, value in fresh.model.state_dict().items():
                assert torch.equal(shared.model.state_dict()[name], value), name
            assert all(torch.equal(shared.masks[n], m) for n, m in fresh.masks.items())
    assert cost._BASE is None
