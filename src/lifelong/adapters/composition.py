"""Composing frozen bottleneck adapters: ScaLearn (learned scaling) and AdapterFusion (attention).

Two-stage task transfer: stage 1 trains one :class:`TaskAdapter` per task (the backbone frozen); stage 2 keeps
those adapters frozen and learns, at each adapted layer, how to combine their outputs for a target task.

- :class:`ScaLearn` (Frohmann et al., *ScaLearn: Simple and Highly Parameter-Efficient Task Transfer by Learning
  to Scale*, arXiv 2310.01217): ``h' = sum_j omega_j * up_j(h) + h`` with one scaling vector ``omega_j`` per
  adapter (``shape="vector"``) or one scalar (``shape="scalar"``, :class:`ScaLearnUniform`); ``omega``
  initialised ``N(init_scale / n, 0.001)`` and dropped out (``dropout``, training only). No softmax, no
  attention. The ``++`` variants share one composition module across layers (:func:`composition_layers`).
- :class:`AdapterFusion` (Pfeiffer et al., *AdapterFusion: Non-Destructive Task Composition for Transfer
  Learning*, arXiv 2005.00247): query from ``h``, keys and values from the adapter outputs, softmax over the
  adapters, ``h' = sum_j softmax(q . k_j) V up_j(h) + h``.

Every composition module takes ``(h, ups)``: ``h`` the layer's hidden state (batch, d) (the residual and
Fusion's query) and ``ups`` the adapters' up-projection outputs stacked to (batch, n, d), before their
residual. :func:`transfer_parameters` counts what stage 2 learns besides the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError

#: Composition kinds of :func:`make_composition` / :func:`composition_layers`.
COMPOSITIONS: tuple[str, ...] = ("scalearn", "scalearn_uniform", "scalearn++", "scalearn_uniform++", "fusion")

_NONLINEARITIES = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


class TaskAdapter(nn.Module):
    """A bottleneck adapter ``h + scaling * up(f(down(h)))`` (Houlsby / Pfeiffer style), one per task and layer.

    Args:
        dim: width of the hidden state it adapts.
        bottleneck: width of the down-projection.
        nonlinearity: ``relu``, ``gelu`` or ``tanh``.
        scaling: factor on the up-projection output.
        init: ``bert`` (both projections ``N(0, 0.02)``, zero biases: adapter-transformers' default) or
            ``zero_up`` (down Kaiming-uniform, up and biases zero, so the adapter starts as the identity).
    """

    def __init__(
        self, dim: int, bottleneck: int = 32, nonlinearity: str = "relu", scaling: float = 1.0, init: str = "bert"
    ):
        super().__init__()
        if dim < 1 or bottleneck < 1:
            raise ConfigError(f"adapter dim and bottleneck must be >= 1, got {dim}, {bottleneck}")
        if nonlinearity not in _NONLINEARITIES:
            raise ConfigError(f"nonlinearity must be one of {sorted(_NONLINEARITIES)}, got {nonlinearity!r}")
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.nonlinearity = nonlinearity
        self.scaling = float(scaling)
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "bert") -> None:
        """Re-draw the weights with ``init`` (``bert`` or ``zero_up``, see the class)."""
        with torch.no_grad():
            if init == "bert":
                self.down.weight.normal_(0.0, 0.02)
                self.up.weight.normal_(0.0, 0.02)
            elif init == "zero_up":
                nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)
                self.up.weight.zero_()
            else:
                raise ConfigError(f"adapter init must be 'bert' or 'zero_up', got {init!r}")
            self.down.bias.zero_()
            self.up.bias.zero_()

    def delta(self, h: torch.Tensor) -> torch.Tensor:
        """The up-projection output ``scaling * up(f(down(h)))`` (what a composition combines)."""
        return self.scaling * self.up(_NONLINEARITIES[self.nonlinearity](self.down(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h + delta(h)``: the adapter alone, with its residual."""
        return h + self.delta(h)


def _check_ups(h: torch.Tensor, ups: torch.Tensor, n: int, dim: int) -> None:
    if ups.dim() != 3 or ups.shape[1] != n or ups.shape[2] != dim or ups.shape[0] != h.shape[0]:
        raise ConfigError(
            f"composition over {n} adapters of width {dim} needs ups of shape (batch, {n}, {dim}) and h of "
            f"(batch, {dim}); got ups {tuple(ups.shape)}, h {tuple(h.shape)}"
        )


class ScaLearn(nn.Module):
    """ScaLearn's composition: ``h' = sum_j dropout(omega)_j * ups_j + h`` (arXiv 2310.01217).

    Args:
        n_adapters: how many adapter outputs it combines.
        dim: their width.
        shape: ``vector`` (``omega`` is (n, dim): ScaLearn) or ``scalar`` ((n, 1): ScaLearnUniform).
        init_scale: ``omega ~ N(init_scale / n, 0.001)`` (the official ``omega_init_type="avg"``, scale 2).
        dropout: dropout on ``omega`` in training (official default 0.3); none in ``eval()``.
        residual: add ``h`` back (the official default).
        generator: optional generator for the initial draw.
    """

    def __init__(
        self,
        n_adapters: int,
        dim: int,
        shape: str = "vector",
        init_scale: float = 2.0,
        dropout: float = 0.3,
        residual: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if n_adapters < 1 or dim < 1:
            raise ConfigError(f"ScaLearn needs n_adapters >= 1 and dim >= 1, got {n_adapters}, {dim}")
        if shape not in ("vector", "scalar"):
            raise ConfigError(f"omega shape must be 'vector' or 'scalar', got {shape!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.n_adapters, self.dim, self.shape = n_adapters, dim, shape
        size = (n_adapters, dim if shape == "vector" else 1)
        omega = torch.randn(size, generator=generator) * 0.001 + init_scale / n_adapters
        self.omega = nn.Parameter(omega)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual

    def forward(self, h: torch.Tensor, ups: torch.Tensor) -> torch.Tensor:
        """Combine ``ups`` (batch, n, d) with the learned scales and add ``h`` (batch, d)."""
        _check_ups(h, ups, self.n_adapters, self.dim)
        out = (self.dropout(self.omega).unsqueeze(0) * ups).sum(1)
        return out + h if self.residual else out


class ScaLearnUniform(ScaLearn):
    """ScaLearnUniform: one scalar per adapter (``omega`` of shape (n, 1)); otherwise :class:`ScaLearn`."""

    def __init__(self, n_adapters: int, dim: int, **kwargs):
        super().__init__(n_adapters, dim, shape="scalar", **kwargs)


class AdapterFusion(nn.Module):
    """AdapterFusion (Pfeiffer et al., arXiv 2005.00247): attention of ``h`` over the adapter outputs.

    ``q = Q h``, ``k_j = K ups_j``, ``v_j = V ups_j``; ``a = softmax(dropout(q . k_j))`` over the adapters;
    ``h' = sum_j a_j v_j + h``. ``Q`` and ``K`` are ``N(0, 0.02)`` with zero bias (BERT init), ``V`` has no bias
    and starts at the identity (adapter-transformers' ``value_initialized`` option), so Fusion starts as a
    near-uniform average of the adapter outputs. ``dropout`` on the attention scores (training only).
    :meth:`value_regularization` is adapter-transformers' Fusion regulariser ``||I - V||^2`` (the fork adds it to
    the loss with weight 0.01).
    """

    def __init__(self, n_adapters: int, dim: int, dropout: float = 0.1, generator: torch.Generator | None = None):
        super().__init__()
        if n_adapters < 1 or dim < 1:
            raise ConfigError(f"AdapterFusion needs n_adapters >= 1 and dim >= 1, got {n_adapters}, {dim}")
        self.n_adapters, self.dim = n_adapters, dim
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            for lin in (self.query, self.key):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=generator) * 0.02)
                lin.bias.zero_()
            self.value.weight.copy_(torch.eye(dim))

    def value_regularization(self) -> torch.Tensor:
        """``sum((I - V)^2)``: the pull of the value matrix toward the identity (zero at the start)."""
        eye = torch.eye(self.dim, dtype=self.value.weight.dtype, device=self.value.weight.device)
        return (eye - self.value.weight).pow(2).sum()

    def attention(self, h: torch.Tensor, ups: torch.Tensor) -> torch.Tensor:
        """The attention weights (batch, n) over the adapters (they sum to 1 per row)."""
        _check_ups(h, ups, self.n_adapters, self.dim)
        scores = torch.einsum("bd,bnd->bn", self.query(h), self.key(ups))
        return torch.softmax(self.dropout(scores), dim=-1)

    def forward(self, h: torch.Tensor, ups: torch.Tensor) -> torch.Tensor:
        """``sum_j attention_j * V ups_j + h``."""
        return torch.einsum("bn,bnd->bd", self.attention(h, ups), self.value(ups)) + h


def make_composition(kind: str, n_adapters: int, dim: int, **kwargs) -> nn.Module:
    """One composition module of ``kind`` (see :data:`COMPOSITIONS`; a ``++`` kind builds its shared module).

    ``kwargs`` go to the module (``init_scale``, ``dropout``, ``generator``...).
    """
    base = kind.removesuffix("++")
    if kind not in COMPOSITIONS:
        raise ConfigError(f"composition must be one of {', '.join(COMPOSITIONS)}, got {kind!r}")
    if base == "scalearn":
        return ScaLearn(n_adapters, dim, **kwargs)
    if base == "scalearn_uniform":
        return ScaLearnUniform(n_adapters, dim, **kwargs)
    return AdapterFusion(n_adapters, dim, **kwargs)


def composition_layers(kind: str, n_adapters: int, dims: Sequence[int], **kwargs) -> nn.ModuleList:
    """One composition module per adapted layer (widths ``dims``).

    A ``++`` kind (ScaLearn++, ScaLearnUniform++) puts the *same* module at every layer, so its scales are
    shared across layers (the layers must then have one width); dropout still draws a new mask per layer.
    """
    if not dims:
        raise ConfigError("composition_layers needs at least one layer width")
    if kind.endswith("++"):
        if len(set(dims)) != 1:
            raise ConfigError(f"{kind} shares its scales across layers, which needs equal widths, got {list(dims)}")
        shared = make_composition(kind, n_adapters, dims[0], **kwargs)
        return nn.ModuleList([shared] * len(dims))
    return nn.ModuleList(make_composition(kind, n_adapters, d, **kwargs) for d in dims)


def fusion_regularization(modules: Sequence[nn.Module]) -> torch.Tensor | float:
    """The sum of :meth:`AdapterFusion.value_regularization` over every Fusion inside ``modules`` (0 if none)."""
    terms = [sub.value_regularization() for m in modules for sub in m.modules() if isinstance(sub, AdapterFusion)]
    return torch.stack(terms).sum() if terms else 0.0


def transfer_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module`` counted once each (shared modules and tied tensors only once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def stack_deltas(adapters: Sequence[TaskAdapter], h: torch.Tensor) -> torch.Tensor:
    """The adapters' :meth:`TaskAdapter.delta` outputs on ``h`` stacked to (batch, n, d)."""
    return torch.stack([a.delta(h) for a in adapters], dim=1)


__all__ = [
    "COMPOSITIONS",
    "TaskAdapter",
    "ScaLearn",
    "ScaLearnUniform",
    "AdapterFusion",
    "make_composition",
    "composition_layers",
    "transfer_parameters",
    "fusion_regularization",
    "stack_deltas",
]
