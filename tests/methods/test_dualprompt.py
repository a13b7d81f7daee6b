"""DualPrompt (arXiv 2204.04799): G-prompt + per-task E-prompts as prefixes; earlier E-prompts stay frozen."""

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.methods import make_learner


@pytest.fixture
def cfg(tiny_text_model):
    return {
        "backbone": str(tiny_text_model),
        "epochs": 3,
        "batch_size": 8,
        "g_layers": (0,),
        "e_layers": (1,),
        "g_length": 2,
        "e_length": 3,
        "tasks": 3,
    }


def test_earlier_e_prompts_and_keys_are_bit_identical_after_the_next_task(cfg, token_stream):
    learner = make_learner("dualprompt", cfg)
    learner.learn(token_stream[0])
    e0, k0, g0 = learner.prompt.e[0].clone(), learner.prompt.e_keys[0].clone(), learner.prompt.g.detach().clone()
    init1 = learner.prompt.e[1].clone()
    learner.learn(token_stream[1])
    assert torch.equal(learner.prompt.e[0], e0) and torch.equal(learner.prompt.e_keys[0], k0)
    assert not torch.equal(learner.prompt.e[1], init1)  # task 1's E-prompt trained
    assert not torch.equal(learner.prompt.g.detach(), g0)  # the shared G-prompt keeps training
    assert int(learner.prompt.trained) == 2


def test_at_test_only_the_matched_e_prompt_changes_the_output(cfg, token_stream):
    learner = make_learner("dualprompt", cfg)
    for e in token_stream:
        learner.learn(e)
    x = torch.cat([e.test_tensors()[0] for e in token_stream])
    q = learner.queries(x)
    with torch.no_grad():  # keys that split the sentences: the first matches task 0, the last task 1
        learner.prompt.e_keys[0] = q[0]
        learner.prompt.e_keys[1] = q[-1]
    pick = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(learner.prompt.e_keys[:2], dim=1).T
    pick = pick.argmax(1)
    rows = pick == 0
    assert rows[0] and not rows[-1]
    with torch.no_grad():
        base, _ = learner.features(x, q)
        learner.prompt.e[1] += 3.0  # the E-prompt of task 1: only sentences matched to task 1 move
        learner.prompt.e[2] += 3.0  # a task never trained: never used
        after, _ = learner.features(x, q)
    assert torch.equal(after[rows], base[rows])
    assert (after[~rows] - base[~rows]).abs().max() > 1e-4


def test_too_many_tasks_and_missing_layers_are_refused(cfg, token_stream):
    learner = make_learner("dualprompt", {**cfg, "tasks": 1})
    learner.learn(token_stream[0])
    with pytest.raises(ConfigError, match="method.tasks"):
        learner.learn(token_stream[1])
    with pytest.raises(ConfigError, match="do not exist"):
        make_learner("dualprompt", {**cfg, "e_layers": (2, 3)}).learn(token_stream[0])


def test_shared_prompt_pool_starts_each_e_prompt_from_the_previous_trained_one(cfg, token_stream):
    """The PyTorch port's ``shared_prompt_pool``: task t's E-prompt starts as task t-1's trained E-prompt (its
    key does not); off, it starts from its own uniform draw."""
    starts = {}
    for shared in (False, True):
        learner = make_learner("dualprompt", {**cfg, "shared_prompt_pool": shared})
        learner.learn(token_stream[0])
        e0, own1, key1 = learner.prompt.e[0].clone(), learner.prompt.e[1].clone(), learner.prompt.e_keys[1].clone()
        learner.prompt.begin_task(1)
        starts[shared] = learner.prompt.e_active.detach().clone()
        assert torch.equal(learner.prompt.key_active.detach(), key1)  # keys are never shared
        learner.prompt.end_task()
        assert torch.equal(starts[shared], e0 if shared else own1)
    assert not torch.equal(starts[True], starts[False])
