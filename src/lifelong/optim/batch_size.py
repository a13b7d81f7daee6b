"""Adaptive batch sizes: tests on per-sample gradients that grow the batch between optimizer steps.

The norm test and the (augmented) inner-product test of AdAdaGrad: Adaptive Batch Size Schemes for
Adaptive Gradient Methods (arXiv 2402.11215), run on per-sample gradients from ``torch.func``; the
batch never shrinks and is capped. A gradient method takes one through its optimizer spec
(``sgd+norm_test``, :mod:`lifelong.optim.spec`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch.func import functional_call, grad, vmap

from lifelong.errors import ConfigError, DataError, NonFiniteLossError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def per_sample_gradients(
    model: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample gradients ``{name: (n, *param.shape)}`` of ``loss_fn(model(x_i), y_i)``.

    Vectorized with ``torch.func.vmap(torch.func.grad(...))`` over
    ``torch.func.functional_call`` (as in the official AdAdaGrad ``tests.py``), so no
    Python loop runs over samples. Only parameters with ``requires_grad`` get
    gradients. ``loss_fn`` is called on a batch of one (``(1, ...)`` output, ``(1, ...)``
    target) and must return a scalar. Models whose forward mixes samples (BatchNorm in
    training mode) do not have per-sample gradients; put them in eval mode first.
    """
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    if not params:
        raise ConfigError(
            "per_sample_gradients: the model has no trainable parameters; "
            "set requires_grad=True on the parameters to train"
        )

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, frozen, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    return vmap(grad(one), in_dims=(None, 0, 0), randomness="different")(params, x, y)


class BatchSizeController:
    """Base of the adaptive batch-size controllers of AdAdaGrad (arXiv 2402.11215).

    Holds the current batch size ``b_k`` (:attr:`batch_size`), which only grows and is
    capped at ``max_batch_size``. :meth:`update` computes per-sample gradients of the
    batch it is given, asks the subclass's test for a proposed size ``b_new`` and sets
    ``b_{k+1} = min(max(b_k, ceil(b_new)), max_batch_size)``. The controller does not
    touch the optimizer and works with any of them.

    Args:
        initial_batch_size: ``b_0`` (>= 2: a sample variance needs two samples).
        max_batch_size: cap (>= ``initial_batch_size``), e.g. the training-set size.
        max_test_samples: if set (>= 2), the test uses the per-sample gradients of at
            most this many samples of the batch (its first ones; pass a shuffled batch)
            — the paper's "micro-batch" option, which bounds the test's cost at large
            batches. The variance estimates stay unbiased, only noisier.
    """

    def __init__(
        self, initial_batch_size: int = 16, max_batch_size: int = 4096, *, max_test_samples: int | None = None
    ):
        if not (isinstance(initial_batch_size, int) and initial_batch_size >= 2):
            raise ConfigError(
                f"initial_batch_size must be an integer >= 2 (the tests need a sample variance), "
                f"got {initial_batch_size!r}"
            )
        if not (isinstance(max_batch_size, int) and max_batch_size >= initial_batch_size):
            raise ConfigError(
                f"max_batch_size must be an integer >= initial_batch_size ({initial_batch_size}), "
                f"got {max_batch_size!r}; set it to e.g. the training-set size"
            )
        if max_test_samples is not None and not (isinstance(max_test_samples, int) and max_test_samples >= 2):
            raise ConfigError(f"max_test_samples must be None or an integer >= 2, got {max_test_samples!r}")
        self.max_test_samples = max_test_samples
        self.initial_batch_size = initial_batch_size
        self.max_batch_size = max_batch_size
        self._batch_size = initial_batch_size
        #: Batch size after each :meth:`update` call (starts with ``b_0``).
        self.history: list[int] = [initial_batch_size]
        #: Statistics of the last test (variance terms, squared mean-gradient norm, proposal).
        self.last_stats: dict[str, float] = {}

    @property
    def batch_size(self) -> int:
        """The batch size to draw for the next step."""
        return self._batch_size

    def _propose(
        self, grads: dict[str, torch.Tensor], means: dict[str, torch.Tensor]
    ) -> tuple[float, dict[str, float]]:
        """Proposed batch size from per-sample gradients and their means, and statistics."""
        raise NotImplementedError

    def update(
        self, model: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, set_grad: bool = False
    ) -> int:
        """Run the test on batch ``(x, y)`` and return the next batch size.

        Args:
            model: the model being trained (its current parameters are used).
            loss_fn: ``loss_fn(output, target) -> scalar`` (mean reduction), e.g.
                ``torch.nn.functional.cross_entropy``.
            x, y: the current batch (at least 2 samples).
            set_grad: also write the batch-mean gradient into each parameter's
                ``.grad`` (replacing it), so the caller can call ``optimizer.step()``
                without another backward pass.

        Raises:
            DataError: fewer than 2 samples or mismatched lengths.
            NonFiniteLossError: the per-sample gradients hold NaN/inf.
        """
        if x.shape[0] != y.shape[0]:
            raise DataError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; pass matching batches")
        if x.shape[0] < 2:
            raise DataError(
                f"the batch-size test needs at least 2 samples, got {x.shape[0]}; "
                f"draw controller.batch_size samples per step"
            )
        m = x.shape[0] if self.max_test_samples is None else min(x.shape[0], self.max_test_samples)
        grads = per_sample_gradients(model, loss_fn, x[:m], y[:m])
        means = {k: g.mean(0) for k, g in grads.items()}
        proposal, stats = self._propose(grads, means)
        if not all(math.isfinite(v) for v in stats.values() if v is not None):
            raise NonFiniteLossError(
                "the per-sample gradients of the batch-size test are NaN or infinite; "
                "check the loss and inputs, or lower the learning rate"
            )
        new = self._batch_size
        if proposal > new:
            new = self.max_batch_size if not math.isfinite(proposal) else min(self.max_batch_size, math.ceil(proposal))
        self._batch_size = max(self._batch_size, new)
        self.history.append(self._batch_size)
        self.last_stats = {**stats, "proposal": proposal}
        if set_grad and m == x.shape[0]:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in grads:
                        p.grad = means[name].to(p.dtype)
        elif set_grad:  # the test saw a subset: one ordinary backward pass over the whole batch
            for p in model.parameters():
                p.grad = None
            with torch.enable_grad():
                loss_fn(model(x), y).backward()
        return self._batch_size

    def state_dict(self) -> dict:
        """Batch size and history, for checkpoints."""
        return {"batch_size": self._batch_size, "history": list(self.history)}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict`."""
        bs = int(state["batch_size"])
        if not self.initial_batch_size <= bs <= self.max_batch_size:
            raise ConfigError(
                f"saved batch size {bs} is outside [{self.initial_batch_size}, "
                f"{self.max_batch_size}] of this controller; build it with the same limits"
            )
        self._batch_size = bs
        self.history = [int(b) for b in state["history"]]


def _moments(grads: dict[str, torch.Tensor], means: dict[str, torch.Tensor]):
    """Batch size, per-layer mean gradients, ``||g_bar||^2`` and the summed unbiased variance.

    Uses ``sum_j Var_i[g_ij] = (sum_i ||g_i||^2 - n ||g_bar||^2) / (n - 1)``: one pass for
    the squared norms and one for the mean, instead of an explicit per-coordinate variance
    (several times slower on large per-sample tensors). The subtraction only loses
    precision when the variance is tiny next to ``||g_bar||^2``, i.e. when the proposed
    batch size is far below any real one; the result is clamped at 0.
    """
    n = next(iter(grads.values())).shape[0]
    gsq = torch.stack([m.pow(2).sum() for m in means.values()]).sum()
    total = torch.stack([torch.linalg.vector_norm(g).pow(2) for g in grads.values()]).sum()
    var_sum = ((total - n * gsq) / (n - 1)).clamp_min(0)
    return n, means, gsq, var_sum


class NormTestBatchController(BatchSizeController):
    """Adaptive batch size by the (approximate) norm test (AdAdaGrad, arXiv 2402.11215).

    With per-sample gradients ``g_i`` of the current batch and their mean ``g_bar``::

        b_new = ||Var_i[g_i]||_1 / (eta^2 ||g_bar||^2)

    (unbiased per-coordinate variance, summed over all parameters), the batch size
    that makes the mean gradient's relative variance at most ``eta^2``. Same statistic as
    the official ``tests.py::norm_test``, computed in one pass as
    ``(sum_i ||g_i||^2 - n ||g_bar||^2) / (n - 1)``. ``eta`` examples from the paper: 0.1 (MNIST) and
    0.5 (CIFAR-10).

    ``coordinatewise=True`` is a *guess* at the paper's coordinate-wise test for
    AdAdaGrad (only named in its abstract here): the norm test applied to every
    coordinate separately, ``b_new = max_j Var_i[g_ij] / (eta^2 g_bar_j^2)`` over the
    coordinates with ``g_bar_j != 0``. It is far stricter and usually reaches the cap fast.
    """

    def __init__(
        self,
        initial_batch_size: int = 16,
        max_batch_size: int = 4096,
        *,
        eta: float = 0.1,
        coordinatewise: bool = False,
        max_test_samples: int | None = None,
    ):
        super().__init__(initial_batch_size, max_batch_size, max_test_samples=max_test_samples)
        if not (math.isfinite(eta) and eta > 0):
            raise ConfigError(f"norm test: eta must be > 0, got {eta!r}; the paper uses 0.1-0.5")
        self.eta = eta
        self.coordinatewise = coordinatewise

    def _propose(
        self, grads: dict[str, torch.Tensor], means: dict[str, torch.Tensor]
    ) -> tuple[float, dict[str, float]]:
        if self.coordinatewise:
            n = next(iter(grads.values())).shape[0]
            worst, gsq = [], []
            for k, g in grads.items():
                m2 = means[k].pow(2)
                var = ((g.pow(2).sum(0) - n * m2) / (n - 1)).clamp_min(0)
                ratio = torch.where(m2 > 0, var / (self.eta**2 * m2), torch.zeros_like(var))
                worst.append(ratio.max())
                gsq.append(m2.sum())
            b_new, gsq_v = torch.stack([torch.stack(worst).max(), torch.stack(gsq).sum()]).tolist()
            return b_new, {"grad_norm_sq": gsq_v}
        _, _, gsq, var_sum = _moments(grads, means)
        var_v, gsq_v = torch.stack([var_sum, gsq]).tolist()
        stats = {"variance_l1": var_v, "grad_norm_sq": gsq_v}
        if gsq_v == 0.0:
            return (math.inf if var_v > 0 else 0.0), stats
        return var_v / (self.eta**2 * gsq_v), stats


class InnerProductTestBatchController(BatchSizeController):
    """Adaptive batch size by the augmented inner-product test (AdAdaGrad, arXiv 2402.11215).

    With ``a_i = <g_i, g_bar>`` and ``g_i_perp = g_i - a_i g_bar / ||g_bar||^2``::

        b_new = max( Var_i[a_i] / (theta^2 ||g_bar||^4),
                     ||Var_i[g_i_perp]||_1 / (nu^2 ||g_bar||^2) )

    the inner-product test plus the orthogonality test, as in the official
    ``tests.py::inner_product_orthogonality_test``; defaults ``theta=0.5, nu=1``
    (``augmented=False`` drops the orthogonality term). Variances are unbiased. The
    orthogonal term is obtained without forming ``g_i_perp``, from the exact split
    ``sum_j Var[g_ij] = Var[a_i] / ||g_bar||^2 + sum_j Var[g_i_perp_j]``.
    """

    def __init__(
        self,
        initial_batch_size: int = 16,
        max_batch_size: int = 4096,
        *,
        theta: float = 0.5,
        nu: float = 1.0,
        augmented: bool = True,
        max_test_samples: int | None = None,
    ):
        super().__init__(initial_batch_size, max_batch_size, max_test_samples=max_test_samples)
        for name, v in (("theta", theta), ("nu", nu)):
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"inner-product test: {name} must be > 0, got {v!r}; paper defaults theta=0.5, nu=1")
        self.theta, self.nu, self.augmented = theta, nu, augmented

    def _propose(
        self, grads: dict[str, torch.Tensor], means: dict[str, torch.Tensor]
    ) -> tuple[float, dict[str, float]]:
        n, means, gsq, var_sum = _moments(grads, means)
        inner = sum(g.reshape(n, -1) @ means[k].reshape(-1) for k, g in grads.items())
        var_ip = inner.var(correction=1)
        # g_i = (a_i / ||g_bar||^2) g_bar + g_i_perp splits the summed variance exactly into
        # Var[a] / ||g_bar||^2 plus the summed variance of the orthogonal parts.
        orth = (var_sum - var_ip / gsq.clamp_min(torch.finfo(gsq.dtype).tiny)).clamp_min(0)
        var_ip_v, gsq_v, orth_v = torch.stack([var_ip, gsq, orth]).tolist()
        if not self.augmented:
            orth_v = 0.0
        stats = {"inner_product_variance": var_ip_v, "orthogonal_variance_l1": orth_v, "grad_norm_sq": gsq_v}
        if gsq_v == 0.0:
            return (math.inf if var_ip_v > 0 or orth_v > 0 else 0.0), stats
        b_ip = var_ip_v / (self.theta**2 * gsq_v**2)
        b_orth = orth_v / (self.nu**2 * gsq_v) if self.augmented else 0.0
        return max(b_ip, b_orth), stats
