"""The training loop: it learns, resumes to the same numbers, records eval history, calls hooks, refuses NaN."""

import pytest
import torch

from lifelong.errors import CheckpointError, NonFiniteLossError
from lifelong.incontext import PromptTransformer, TrainConfig, per_position_error, train
from lifelong.incontext.tasks.linear import LinearRegression


def _model(seed: int = 0) -> PromptTransformer:
    torch.manual_seed(seed)
    return PromptTransformer(2, d_model=32, layers=1, heads=4, max_points=8)


def _eval(model, step):
    p = LinearRegression(d=2, n_points=6).sample(64, torch.Generator().manual_seed(123))
    return {"mse_last": float(per_position_error(model, p)[-1])}


def test_training_makes_late_positions_better_than_early_ones():
    sampler = LinearRegression(d=2, n_points=6)
    model = _model()
    cfg = TrainConfig(steps=500, batch=32, lr=3e-3, eval_every=250, seed=1)
    history = train(model, sampler, cfg, eval_fn=_eval, progress=False)
    assert [e["step"] for e in history.evals] == [0, 250, 500]
    assert len(history.losses) == 500
    assert history.evals[-1]["mse_last"] < 0.6 * history.evals[0]["mse_last"]
    err = per_position_error(model, sampler.sample(256, torch.Generator().manual_seed(5)))
    assert err[-1] < 0.85 * err[0]  # it uses the context


def test_resume_gives_identical_numbers(tmp_path):
    sampler = LinearRegression(d=2, n_points=6, noise=0.1)
    cfg = TrainConfig(steps=20, batch=8, lr=1e-3, schedule="cosine", eval_every=5, checkpoint_every=10, seed=3)
    whole = _model()
    h_whole = train(whole, sampler, cfg, eval_fn=_eval, progress=False)

    first = _model()
    stop = TrainConfig(**{**cfg.__dict__})

    calls = []

    def crash(model, step):
        calls.append(step)
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(first, sampler, stop, eval_fn=_eval, on_step=crash, out_dir=tmp_path, progress=False)
    resumed = _model(seed=99)  # other init: everything must come from the checkpoint at step 10
    torch.manual_seed(1234)  # and the global RNG too
    h_res = train(resumed, sampler, cfg, eval_fn=_eval, out_dir=tmp_path, resume=True, progress=False)
    assert h_res.losses == h_whole.losses
    assert h_res.evals == h_whole.evals
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError):
        train(_model(), sampler, TrainConfig(steps=21, batch=8), out_dir=tmp_path, resume=True, progress=False)


def test_hooks_get_the_step_and_optionally_the_optimizer():
    seen = []

    def plain(model, step):
        seen.append(("plain", step))

    def with_opt(model, step, optimizer):
        seen.append(("opt", step, type(optimizer).__name__))

    train(
        _model(),
        LinearRegression(d=2, n_points=6),
        TrainConfig(steps=2, batch=4),
        on_step=[plain, with_opt],
        progress=False,
    )
    assert seen == [("plain", 1), ("opt", 1, "Adam"), ("plain", 2), ("opt", 2, "Adam")]


def test_nan_loss_stops_with_a_clear_error():
    with pytest.raises(NonFiniteLossError, match="lower lr"):
        train(
            _model(),
            LinearRegression(d=2, n_points=6),
            TrainConfig(steps=3, batch=4),
            loss=lambda out, p: out.sum() * float("nan"),
            progress=False,
        )
