"""CODA-Prompt (arXiv 2211.13218): attention-weighted components; new ones orthogonal to old, old ones frozen."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.methods import make_learner


@pytest.fixture
def cfg(tiny_text_model):
    return {
        "backbone": str(tiny_text_model),
        "epochs": 3,
        "batch_size": 8,
        "layers": (0, 1),
        "pool": 6,
        "length": 4,
        "tasks": 3,
        "lr": 0.01,
    }


def test_new_components_start_orthogonal_to_the_trained_old_ones_which_stay_frozen(cfg, token_stream):
    learner = make_learner("coda-prompt", cfg)
    learner.learn(token_stream[0])
    pool = learner.prompt
    old = {k: getattr(pool, k)[:, :2].clone() for k in ("components", "keys", "attention")}
    learner.learn(token_stream[1])
    for k in ("components", "keys", "attention"):
        store = getattr(pool, k)
        assert torch.equal(store[:, :2], old[k])  # task 0's components: bit-identical
    # task 2's initialisation is orthogonal to tasks 0 and 1 (trained, no longer orthogonal to each other)
    pool.begin_task(2, torch.Generator().manual_seed(1))
    for k in ("components", "keys", "attention"):
        store = getattr(pool, k)
        for j in range(2):
            flat = store[j].flatten(1)
            assert (flat[4:6] @ flat[:4].T).abs().max() < 1e-5, k
            torch.testing.assert_close(flat[4:6].norm(dim=1), torch.ones(2))


def test_prompt_is_the_attention_weighted_sum_of_components(cfg, token_stream):
    learner = make_learner("coda-prompt", cfg)
    learner.learn(token_stream[0])
    pool = learner.prompt
    x, _ = token_stream[0].test_tensors()
    q = learner.queries(x)
    pre, _ = pool.prefixes(q)
    P, K, A = pool.components[:, :2], pool.keys[:, :2], pool.attention[:, :2]
    for j in range(2):
        alpha = (F.normalize(q[:, None] * A[j][None], dim=-1) * F.normalize(K[j], dim=-1)[None]).sum(-1)
        expected = torch.einsum("nm,mpd->npd", alpha, P[j])
        torch.testing.assert_close(pre[j][0], expected[:, :2])
        torch.testing.assert_close(pre[j][1], expected[:, 2:])


def test_orthogonality_loss_is_added_in_training_only(cfg, token_stream):
    learner = make_learner("coda-prompt", {**cfg, "ortho_weight": 0.5})
    learner.prepare((), 4)
    learner.begin_task(0)
    q = torch.randn(3, 16)
    _, loss = learner.prompt.prefixes(q, 0.5)
    assert loss > 0 or torch.equal(loss, torch.zeros(()))
    learner.end_task()
    _, loss = learner.prompt.prefixes(q, 0.5)
    assert float(loss) == 0.0


def test_bad_settings_are_refused(cfg):
    with pytest.raises(ConfigError, match="even"):
        make_learner("coda-prompt", {**cfg, "length": 3})
    with pytest.raises(ConfigError, match="pool"):
        make_learner("coda-prompt", {**cfg, "pool": 2})
