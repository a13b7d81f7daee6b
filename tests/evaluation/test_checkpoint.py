"""Safetensors + JSON checkpoints."""

import json

import pytest
import torch

from lifelong.errors import CheckpointError
from lifelong.evaluation.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state


def test_nested_state_round_trip(tmp_path):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))])
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    state = {
        "a": torch.arange(4),
        "nested": {"b": [1, 2.5, "x", None, torch.ones(2)], "t": (1, 2)},
        "opt": opt.state_dict(),
        "rng": torch.get_rng_state(),
    }
    save_checkpoint(tmp_path, state, {"position": 3})
    back, meta = load_checkpoint(tmp_path)
    assert meta == {"position": 3}
    assert torch.equal(back["a"], state["a"]) and back["nested"]["t"] == (1, 2)
    assert back["nested"]["b"][:4] == [1, 2.5, "x", None]
    new_opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))])
    new_opt.load_state_dict(back["opt"])
    assert torch.equal(new_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert not list(tmp_path.glob("*.tmp"))  # no temp files left behind


def test_no_pickles_and_rejects_objects(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        flatten_state({"f": object()})
    save_checkpoint(tmp_path, {"a": torch.ones(1)}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]


def test_corrupt_or_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, {"a": torch.ones(10)}, {})
    blob = (tmp_path / "state.safetensors").read_bytes()
    (tmp_path / "state.safetensors").write_bytes(blob[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)


def test_missing_tensor_detected():
    tensors, skel = flatten_state({"a": torch.ones(1)})
    with pytest.raises(CheckpointError, match="missing tensor"):
        unflatten_state(skel, {})


def test_mismatched_learner_state_changes_nothing(tmp_path):
    from lifelong.methods import make_learner

    a = make_learner("finetune", {"hidden": "16"})
    a.prepare((4,), 3)
    b = make_learner("finetune", {"hidden": "8"})
    b.prepare((4,), 3)
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not match"):
        b.load_state_dict(a.state_dict())
    after = b.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    json.dumps(flatten_state(a.state_dict())[1])  # skeleton is JSON
