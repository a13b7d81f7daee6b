"""Reference learners against closed forms computed one prompt and one prefix at a time."""

import pytest
import torch

from lifelong.incontext import Prompts
from lifelong.incontext import references as R
from lifelong.incontext.tasks.boolean import BooleanFunctions
from lifelong.incontext.tasks.linear import LinearRegression


def _reg(noise=0.5, b=5, n=9, d=3, seed=0):
    return LinearRegression(d=d, n_points=n, noise=noise).sample(b, torch.Generator().manual_seed(seed))


def _slow(p, fit):
    out = torch.zeros(p.batch, p.n_points, dtype=torch.float64)
    for b in range(p.batch):
        for i in range(p.n_points):
            x, y = p.xs[b, :i].double(), p.ys[b, :i].double()
            out[b, i] = fit(x, y, p.xs[b, i].double())
    return out


def test_ols_is_min_norm_least_squares_on_each_prefix():
    p = _reg()
    want = _slow(p, lambda x, y, q: (torch.linalg.pinv(x) @ y) @ q if len(y) else 0.0)
    torch.testing.assert_close(R.ols(p).double(), want, atol=1e-4, rtol=1e-4)
    exact = _reg(noise=0.0)
    assert R.ols(exact)[:, 3:].sub(exact.ys[:, 3:]).abs().max() < 1e-4  # k >= d examples: exact without noise


def test_ridge_matches_the_closed_form():
    p = _reg()
    eye = torch.eye(3, dtype=torch.float64)
    want = _slow(p, lambda x, y, q: torch.linalg.solve(x.T @ x + 0.25 * eye, x.T @ y) @ q)
    torch.testing.assert_close(R.ridge(p, 0.25).double(), want, atol=1e-5, rtol=1e-5)


def test_gd_averaging_and_online_sgd():
    p = _reg()
    torch.testing.assert_close(R.gd_steps(p, 1, 1.0), R.averaging(p))

    def gd(x, y, q, steps=3, lr=0.3):
        w = torch.zeros(3, dtype=torch.float64)
        for _ in range(steps):
            w = w - lr / max(len(y), 1) * x.T @ (x @ w - y)
        return w @ q

    torch.testing.assert_close(R.gd_steps(p, 3, 0.3).double(), _slow(p, gd), atol=1e-5, rtol=1e-5)
    many = R.gd_steps(_reg(noise=0.0, n=20), steps=500, lr=0.5)
    exact = _reg(noise=0.0, n=20)
    assert (many[:, 12:] - exact.ys[:, 12:]).abs().max() < 1e-2  # GD converges to least squares

    def sgd(x, y, q, lr=0.05):
        w = torch.zeros(3, dtype=torch.float64)
        for xj, yj in zip(x, y):
            w = w + lr * (yj - w @ xj) * xj
        return w @ q

    torch.testing.assert_close(R.online_sgd(p, 0.05).double(), _slow(p, sgd), atol=1e-5, rtol=1e-5)


def test_knn_matches_brute_force():
    p = _reg()

    def nn3(x, y, q):
        if not len(y):
            return 0.0
        d = ((x - q) ** 2).sum(-1)
        return y[d.argsort()[:3]].mean()

    torch.testing.assert_close(R.knn(p, 3).double(), _slow(p, nn3), atol=1e-5, rtol=1e-5)


def test_elimination_never_gives_a_false_positive_and_matches_brute_force():
    p = BooleanFunctions("conjunction", n_dims=6, n_points=25).sample(64, torch.Generator().manual_seed(1))
    pred = R.elimination(p)
    assert torch.all(p.ys[pred > 0] == 1)  # the hypothesis always implies the target conjunction
    acc = (pred == p.ys).float().mean(0)
    assert acc[-5:].mean() > acc[:3].mean() + 0.1  # it learns from the prefix

    def brute(x, y, q):
        pos = x[y > 0]
        if not len(pos):
            return -1.0
        keep_plus, keep_minus = (pos > 0).all(0), (pos < 0).all(0)
        ok = (~keep_plus | (q > 0)) & (~keep_minus | (q < 0))
        return 1.0 if ok.all() else -1.0

    torch.testing.assert_close(pred.double(), _slow(p, brute))
    d = BooleanFunctions("disjunction", n_dims=6, n_points=25).sample(64, torch.Generator().manual_seed(2))
    dual = R.elimination(d, dual=True)
    assert torch.all(d.ys[dual < 0] == -1)  # dual: never a false negative


def test_nearest_neighbour_and_majority_label():
    p = BooleanFunctions("majority", n_dims=5, n_points=12).sample(16, torch.Generator().manual_seed(3))

    def nn(x, y, q):
        return y[(x @ q).argmax()] if len(y) else 0.0

    torch.testing.assert_close(R.nearest_neighbour(p).double(), _slow(p, nn))
    m = R.majority_label(p)
    assert torch.all(m[:, 0] == -1) and set(m.unique().tolist()) <= {-1.0, 1.0}


def test_spd_and_wrong_kinds():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(R.spd(a, torch.zeros(2, 2)), torch.tensor([5.0, 10.0]))
    with pytest.raises(Exception, match="binary"):
        R.elimination(_reg())
    with pytest.raises(Exception, match="regression"):
        R.ols(Prompts(torch.ones(1, 2, 2), torch.ones(1, 2), "binary"))


def test_sparse_parity_vote_learns_the_parity_from_the_prompt():
    p = BooleanFunctions("sparse_parity", n_dims=8, n_points=30).sample(200, torch.Generator().manual_seed(4))
    pred = R.sparse_parity_vote(p, 2)
    acc = (pred == p.ys).float().mean(0)
    assert acc[-10:].mean() > 0.97 and acc[0] < 0.7  # version space collapses onto the true pair


def test_sparse_parity_prior_is_the_no_context_bayes_rule():
    """The rule that ignores the prompt: +1 iff (sum x)^2 < n for k = 2. Its accuracy on sparse-parity prompts is
    the exact Bayes accuracy without context, E[max(p, 1 - p)] with p = P(y = +1 | x) = m (n - m) / C(n, 2) for m
    ones among n uniform bits; on conjunctions it is no better than chance."""
    import math

    n = 10
    g = torch.Generator().manual_seed(5)
    p = BooleanFunctions("sparse_parity", n_dims=n, n_points=30).sample(4000, g)
    prior = R.sparse_parity_prior(p, 2)
    s = p.xs.float().sum(-1)
    torch.testing.assert_close(prior, torch.sign(n - s**2))  # the closed form for k = 2
    assert prior.shape == p.ys.shape
    exact = sum(math.comb(n, m) / 2**n * max(q, 1 - q) for m in range(n + 1) for q in [m * (n - m) / math.comb(n, 2)])
    acc = (prior == p.ys).float().mean()
    assert abs(float(acc) - exact) < 0.01  # 120,000 predictions: standard error ~0.0015
    vote = (R.sparse_parity_vote(p, 2) == p.ys).float().mean(0)
    assert vote[-10:].mean() > acc + 0.4  # the in-context learner far above the no-context rule
    c = BooleanFunctions("conjunction", n_dims=n, n_points=30).sample(2000, g)
    on_conj = (torch.where(R.sparse_parity_prior(c, 2) > 0, 1.0, -1.0) == c.ys).float().mean()
    majority = (R.majority_label(c) == c.ys).float().mean()
    assert on_conj < 0.52 and on_conj < majority
