"""Reference bounds for a continual run: what a learner that sees all data at once reaches.

:func:`joint_logistic_regression` is the joint upper bound used by the class-incremental
reproductions on frozen features (SimpleCIL/APER, arXiv:2303.07338; SLCA, arXiv:2303.05118).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from lifelong.scenarios import Stream


def joint_logistic_regression(stream: Stream, C: float = 1.0, max_iter: int = 500) -> float:
    """Accuracy of the joint upper bound: multinomial logistic regression on every experience at once.

    Trained on the union of all training sets with L-BFGS, objective as scikit-learn's
    default (``C`` times the summed cross-entropy plus half the squared weight norm, bias
    not penalised), on the RMS-normalised features (``sqrt(d) * x / ||x||``) that SLCA and
    APER see. Evaluated on the union of all test sets (equal-sized experiences, so this is
    also the mean of per-experience accuracies when they are balanced).
    """
    xs, ys, xt, yt = [], [], [], []
    for e in stream:
        a, b = e.train_tensors()
        c, d = e.test_tensors()
        xs.append(a.reshape(len(a), -1)), ys.append(b), xt.append(c.reshape(len(c), -1)), yt.append(d)
    x, y = torch.cat(xs).float(), torch.cat(ys)
    x_test, y_test = torch.cat(xt).float(), torch.cat(yt)
    scale = lambda v: F.normalize(v, dim=1) * v.shape[1] ** 0.5  # noqa: E731
    x, x_test = scale(x), scale(x_test)
    k = stream.num_classes
    w = torch.zeros(x.shape[1], k, requires_grad=True)  # float32: same optimum as float64 here, 3x faster
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = C * F.cross_entropy(x @ w + b, y, reduction="sum") + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x_test @ w + b).argmax(1) == y_test).float().mean())


__all__ = ["joint_logistic_regression"]
