import os

import pytest
import torch

from rethink.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rethink.models import ArchSpec, build_model, default_spec


def test_pruned_model_round_trips(tmp_path):
    spec = ArchSpec("resnet20", (3, 5, 7, 11, 13, 17, 19, 23, 29), 1, 4, 8)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    masks = {"blocks.0.conv1.weight": torch.rand(3, 16, 3, 3) > 0.5}
    save_checkpoint(tmp_path / "m.pt", model, spec, masks=masks, meta={"method": "l1-norm"})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 1, 8, 8)
    assert ckpt.spec == spec and ckpt.meta["method"] == "l1-norm"
    assert torch.equal(ckpt.masks["blocks.0.conv1.weight"], masks["blocks.0.conv1.weight"])
    assert torch.equal(loaded.eval()(x), model(x))


def test_spec_that_does_not_match_weights_is_refused(tmp_path):
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    model = build_model(spec)
    wrong = ArchSpec("vgg11", tuple(w * 2 for w in spec.widths), 1, 10, 8)
    save_checkpoint(tmp_path / "m.pt", model, wrong)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path / "m.pt")


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    spec = default_spec("vgg11", 1, 10, 8, 0.25)
    path = save_checkpoint(tmp_path / "m.pt", build_model(spec), spec)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_carrying_code_is_refused(tmp_path):
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    torch.save({"arch": {}, "state_dict": {}, "x": payload}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
