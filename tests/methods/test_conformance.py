"""Every registered method passes the same checks (DESIGN §2).

It learns a two-experience stream, predicts the right shape over the classes seen so
far, round-trips its state through a safetensors checkpoint, gives the same numbers
for the same seed, and resumes an interrupted run to the same numbers.

``quick_configs.TEST_CONFIGS`` holds a method's config overrides that make these
checks quick (fewer epochs, a smaller buffer).
"""

import numpy as np
import pytest
import torch

from lifelong.evaluation import run
from lifelong.evaluation.checkpoint import load_checkpoint, save_checkpoint
from lifelong.methods import get_method, input_kind, list_methods, make_learner
from lifelong.methods.config import build_config
from lifelong.scenarios import class_incremental
from methods.quick_configs import TEST_CONFIGS

_TEXT_MODEL = {}  # "path": the tiny BERT of the token-reading methods, set by the stream fixture


def _make(name, seed=0):
    config = dict(TEST_CONFIGS.get(name, {}))
    if input_kind(get_method(name), build_config(get_method(name).config_class, config)) == "tokens":
        config["backbone"] = _TEXT_MODEL["path"]
    return make_learner(name, config, seed=seed)


@pytest.fixture
def stream(request, blobs):
    """Blobs for feature readers; for token-id readers, sentences of four topics through a tiny random BERT."""
    name = request.node.callspec.params["name"]
    cls = get_method(name)
    if input_kind(cls, build_config(cls.config_class, dict(TEST_CONFIGS.get(name, {})))) == "tokens":
        _TEXT_MODEL["path"] = str(request.getfixturevalue("tiny_text_model"))
        return request.getfixturevalue("token_stream")
    return class_incremental(blobs, tasks=2, seed=0)


@pytest.mark.parametrize("name", list_methods())
def test_learns_and_predicts_seen_classes(name, stream):
    learner = _make(name)
    x, y = stream[0].test_tensors()
    learner.learn(stream[0])
    s = learner.predict(x)
    assert s.shape == (len(x), 2)
    assert torch.isfinite(s).all()
    assert (s.argmax(1) == y).float().mean() > 0.5  # it learned something
    learner.learn(stream[1])
    x1, _ = stream[1].test_tensors()
    s = learner.predict(x1)
    assert s.shape == (len(x1), 4)
    assert torch.isfinite(s[:, :4]).all()


@pytest.mark.parametrize("name", list_methods())
def test_checkpoint_round_trip(name, stream, tmp_path):
    learner = _make(name)
    learner.learn(stream[0])
    save_checkpoint(tmp_path, {"learner": learner.state_dict()}, {"method": name})
    state, meta = load_checkpoint(tmp_path)
    other = _make(name)
    other.load_state_dict(state["learner"])
    x, _ = stream[1].test_tensors()
    assert torch.equal(learner.predict(x), other.predict(x))
    # both continue identically
    learner.learn(stream[1])
    other.learn(stream[1])
    assert torch.allclose(learner.predict(x), other.predict(x), atol=1e-6)


@pytest.mark.parametrize("name", list_methods())
def test_same_seed_same_numbers(name, stream):
    a = run(stream, _make(name, seed=3), seed=3, progress=False)
    b = run(stream, _make(name, seed=3), seed=3, progress=False)
    np.testing.assert_array_equal(a.accuracy_matrix, b.accuracy_matrix)
    assert a.samples_seen == b.samples_seen


@pytest.mark.parametrize("name", list_methods())
def test_interrupted_run_resumes_to_same_numbers(name, stream, tmp_path, monkeypatch):
    full = run(stream, _make(name), progress=False)
    learner = _make(name)
    original = type(learner).learn

    def dies_on_second(self, experience):
        if experience.index == 1:
            raise KeyboardInterrupt
        return original(self, experience)

    monkeypatch.setattr(type(learner), "learn", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(stream, learner, run_dir=tmp_path, progress=False)
    monkeypatch.setattr(type(learner), "learn", original)
    resumed = run(stream, _make(name), run_dir=tmp_path, resume=True, progress=False)
    np.testing.assert_array_equal(full.accuracy_matrix, resumed.accuracy_matrix)
    assert resumed.status == "complete"
