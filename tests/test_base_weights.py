"""`weights = PATH`: the base starts from a local file (issue 39). The file's formats, the errors that name a
mismatch, the spec's checks, and a whole study whose every stage inherits the file's model."""

import hashlib
import json
from pathlib import Path

import mlflow
import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY, assert_stores_agree, study_args
from rethink.data import load_dataset
from rethink.models import MODELS, build_model, default_spec
from rethink.models.external import is_external
from rethink.models.weights import WeightsError, load_weights, read_state_dict
from rethink.prune import prune
from rethink.splits import normalized, train_test
from rethink.train import TrainConfig, evaluate, make_loaders, seed_everything, train
from study.commands.cli import main
from study.plan.arch import base_arch, prune_config
from study.plan.cost import spec_cost
from study.plan.load import load_spec
from study.plan.spec import SpecError
from study.search.trunk import load_data

ARCH = default_spec("vgg11", 1, 10, 8, 0.25)


def _model(seed: int = 1):
    torch.manual_seed(seed)
    return build_model(ARCH)


def _write(fmt: str, state: dict, path: Path) -> Path:
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "state_dict":
        torch.save(state, path)
    elif fmt == "training-script":  # timm's train.py keeps it under state_dict, beside non-tensor entries
        torch.save({"epoch": 7, "arch": "vgg11", "state_dict": state, "optimizer": {"lr": 0.1}}, path)
    elif fmt == "torchvision-reference":  # torchvision's references: {"model": ..., "args": ...}, DDP prefix
        torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    elif fmt == "compiled":
        torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, path)
    return path


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors", "training-script", "torchvision-reference", "compiled"])
def test_every_weights_format_loads_every_tensor_exactly(fmt, tmp_path):
    source = _model(1)
    path = _write(fmt, source.state_dict(), tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}")
    target = _model(2)
    assert not torch.equal(target.state_dict()["features.0.weight"], source.state_dict()["features.0.weight"])
    load_weights(target, path)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


@pytest.mark.parametrize("name", [*sorted(MODELS), "timm:test_resnet", "torchvision:mobilenet_v3_small"])
def test_every_registry_and_library_model_takes_its_own_saved_weights(name, tmp_path):
    if is_external(name):
        pytest.importorskip("timm" if name.startswith("timm:") else "torchvision")
    arch = default_spec(name, 3, 10, 32, 1.0 if is_external(name) else 0.25)
    torch.manual_seed(0)
    source = build_model(arch)
    path = _write("state_dict", source.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    target = build_model(arch)
    load_weights(target, path, name)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())


def test_a_head_for_other_classes_is_named_with_both_shapes(tmp_path):
    torch.manual_seed(0)
    other = build_model(default_spec("vgg11", 1, 100, 8, 0.25))
    path = _write("state_dict", other.state_dict(), tmp_path / "w.pt")
    with pytest.raises(WeightsError) as e:
        load_weights(_model(), path, "vgg11")
    msg = str(e.value)
    head = [k for k, v in other.state_dict().items() if v.shape[:1] == (100,)]
    assert head and all(f"{k} is 100x" in msg or f"{k} is 100 " in msg for k in head[:1]), msg
    assert "in the model" in msg and "\n" not in msg


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = _model().state_dict()
    first = next(iter(state))
    state[f"extra.{first}"] = state.pop(first)
    path = _write("state_dict", state, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=rf"missing {first}.*unexpected extra\.{first}"):
        load_weights(_model(), path)


class Payload:  # a pickled object torch.load(weights_only=True) must refuse
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"not a checkpoint", "cannot be read with torch.load(weights_only=True)"),
        ("pickle", "cannot be read with torch.load(weights_only=True)"),
        ("no-state", "holds a dict with keys epoch, arch, not a state dict"),
    ],
)
def test_unreadable_unsafe_or_empty_files_are_one_line_errors(content, message, tmp_path, capsys):
    path = tmp_path / "w.pt"
    if content == "pickle":
        torch.save({"state_dict": Payload()}, path)
    elif content == "no-state":
        torch.save({"epoch": 1, "arch": "vgg11"}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError) as e:
        read_state_dict(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["study.arms=['finetune', 'lottery']"], "the lottery arm rewinds to the base's init"),
        (["base.sparsity=1e-4"], "base.sparsity shapes the base's training"),
        (["prune.method='magnitude'", "prune.rounds=2"], "prune.rounds: iterative pruning rewinds"),
        (["final.share_base=false"], "final.share_base = false: a base from weights is the only base"),
        (["select.bases=1"], "select.bases = 1: a base from weights is the only base"),
        (["weights_sha256='" + "0" * 64 + "'"], "the spec pins 0000"),
    ],
)
def test_what_a_base_from_a_file_cannot_do_is_refused_on_load(overrides, message, tmp_path):
    path = _write("state_dict", _model().state_dict(), tmp_path / "w.pt")
    with pytest.raises(SpecError) as e:
        load_spec(TINY, [f"weights='{path}'", *overrides])
    assert message in str(e.value)


def test_the_digest_follows_the_files_content_not_its_path(tmp_path, monkeypatch):
    a = _write("state_dict", _model(1).state_dict(), tmp_path / "a.pt")
    (tmp_path / "copy").mkdir()
    b = (tmp_path / "copy" / "a.pt").write_bytes(a.read_bytes()) and tmp_path / "copy" / "a.pt"
    c = _write("state_dict", _model(2).state_dict(), tmp_path / "c.pt")
    monkeypatch.chdir(tmp_path)
    sa, sb, sc = (load_spec(TINY, [f"weights='{p}'"]) for p in ("a.pt", b, c))
    assert sa.weights == str(a) and sa.weights_sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sa.digest() == sb.digest() and sa.base_digest() == sb.base_digest()
    assert sa.base_digest() != sc.base_digest() != load_spec(TINY).base_digest()
    assert sa.final.share_base and sa.select.n_bases == 0


def test_a_spec_without_the_weights_file_is_refused_before_any_run(tracking_uri, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(study_args(storage, tmp_path / "runs", "--set", f"weights='{tmp_path / 'nope.pt'}'")) == 2
    assert f"weights: {tmp_path / 'nope.pt'} not found" in capsys.readouterr().err
    torch.manual_seed(0)
    wrong = build_model(default_spec("vgg11", 1, 10, 8, 0.5))  # the tiny spec builds width 0.25
    path = _write("state_dict", wrong.state_dict(), tmp_path / "wide.pt")
    assert main(study_args(storage, tmp_path / "runs", "--set", f"weights='{path}'")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not fit vgg11 as the spec builds it" in err and "in the file" in err
    assert mlflow.MlflowClient().get_experiment_by_name("tiny") is None  # refused before any run opened


def _trained_base(spec, path: Path) -> torch.nn.Module:
    """A base trained outside rethink for two epochs and saved as a training script would."""
    ds, split = load_data(spec)
    seed_everything(5)
    model = build_model(base_arch(spec, ds))
    train(model, split, TrainConfig(epochs=2, lr=0.05, augment="none", seed=5))
    _write("torchvision-reference", model.state_dict(), path)
    return model.cpu().eval()


def test_a_study_from_a_weights_file_inherits_that_model_everywhere_and_says_so(tracking_uri, tmp_path):
    path = tmp_path / "base.pt"
    model = _trained_base(load_spec(TINY), path)
    sets = ["--set", f"weights='{path}'", "--set", "study.n_trials=1", "--set", 'study.baselines=["paper"]']
    sets += ["--set", 'study.arms=["finetune", "scratch-e"]', "--set", 'verdict.budgets=["E"]']
    sets += ["--set", 'verdict.primary="1@E"']  # the base's path under test, not the search: two arms at E
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = study_args(storage, tmp_path / "runs", *sets, "--report-dir", str(tmp_path / "reports"))
    assert main(args) == 0
    spec = load_spec(TINY, [s for s in sets if s != "--set"])
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=2000)
    by_kind = lambda k: [r for r in runs if r.data.tags.get("rethink.kind") == k]  # noqa: E731

    # the search's base: the file's model, scored on validation, recorded as not trained
    (base,) = by_kind("base")
    assert base.data.tags["rethink.base_source"] == "weights" and "not trained here" in base.data.tags["note"]
    assert base.data.params["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not any(k.startswith("train.") for k in base.data.params)
    _, split = load_data(spec)
    _, loader = make_loaders(split, TrainConfig(), torch.device("cpu"))
    assert base.data.metrics["val_acc"] == pytest.approx(evaluate(model, loader)[1])

    # the pruned model is the file's model pruned: the same kept filters
    expected = prune(model, base_arch(spec, load_data(spec)[0]), prune_config(spec))
    (prune_run,) = by_kind("prune")
    kept = json.loads(
        Path(client.download_artifacts(prune_run.info.run_id, "kept_channels.json", str(tmp_path))).read_text()
    )
    assert {int(k): v for k, v in kept.items()} == expected.keep

    # one final base, the same model scored on test; every fine-tune run inherits it
    finals = by_kind("final")
    (final_base,) = [r for r in finals if r.data.tags.get("rethink.role") == "base"]
    assert final_base.data.tags["rethink.base_source"] == "weights"
    ds = load_dataset(spec.dataset)
    _, test_loader = make_loaders(
        normalized(train_test(ds), spec.normalize, ds.name), TrainConfig(), torch.device("cpu")
    )
    assert final_base.data.metrics["test_acc"] == pytest.approx(evaluate(model, test_loader)[1])
    report = json.loads((tmp_path / "reports" / "tiny" / "verdict.json").read_text())
    unpruned = [r for r in report["table"] if r["arm"] == "unpruned"]
    assert len(unpruned) == 1 and unpruned[0]["seeds"] == 1
    assert any("the base is the weights file" in c for c in report["caveats"])
    finetunes = [r for r in finals if r.data.tags.get("arm") == "finetune"]
    assert len(finetunes) >= 2 and len({r.data.tags["seed"] for r in finetunes}) == 2
    assert {r.data.tags["rethink.base_run"] for r in finetunes} == {final_base.info.run_id}
    assert not by_kind("confirm-base")
    assert_stores_agree(storage, "tiny", client)

    # a rerun finds everything again: no second base run, no new final run
    assert main(args) == 0
    again = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=2000)
    kinds = lambda rs, k: sum(r.data.tags.get("rethink.kind") == k for r in rs)  # noqa: E731
    assert kinds(again, "base") == 1 and kinds(again, "final") == len(finals)


def test_the_cost_counts_no_base_training_with_a_file_and_one_base_when_seeds_share_it(tmp_path):
    path = _write("state_dict", _model().state_dict(), tmp_path / "w.pt")
    own, shared, filed = (
        {s.name: s for s in spec_cost(load_spec(TINY, o)).stages}
        for o in ([], ["final.share_base=true"], [f"weights='{path}'"])
    )
    seeds = load_spec(TINY).final.seeds
    assert own["final: bases (train+val)"].runs == seeds and shared["final: bases (train+val)"].runs == 1
    assert shared["final: bases (train+val)"].macs == pytest.approx(own["final: bases (train+val)"].macs / seeds)
    assert filed["final: bases (train+val)"].runs == 0 and filed["final: bases (train+val)"].macs == 0
    assert "base (search split)" in own and own["base (search split)"].macs > 0
    assert filed["base (the weights file: not trained)"].macs == 0 and "base (search split)" not in filed
    assert "confirmation bases" in own and "confirmation bases" not in filed  # the file's base is the only one
