"""Per-parameter importance estimators and the quadratic penalty of regularisation methods.

- :class:`PathIntegral`: Synaptic Intelligence's online importance (Zenke, Poole & Ganguli, "Continual
  Learning Through Synaptic Intelligence", ICML 2017, arXiv 1703.04200). During an experience each
  parameter accumulates ``omega += -g * delta`` (``g`` the gradient of the task loss without the penalty,
  ``delta`` the parameter's change in the optimizer step); at the end the importance grows by
  ``omega / (Delta^2 + xi)`` with ``Delta`` the parameter's total change over the experience, and is kept
  non-negative (the official ``pathint`` code's ``relu``).
- :func:`output_sensitivity`: Memory Aware Synapses' importance (Aljundi et al., "Memory Aware Synapses:
  Learning what (not) to forget", ECCV 2018, arXiv 1711.09601): the mean over examples of
  ``|d ||f(x)||_2^2 / d theta|`` with ``f`` the network's outputs; no labels needed.
- :func:`quadratic_penalty`: ``sum_i Omega_i (theta_i - theta*_i)^2``, shared by both (and by any
  importance-weighted anchor penalty).

Importances and anchors are dicts ``parameter name -> tensor`` (plain tensors, stored in safetensors
checkpoints as they are).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from lifelong.errors import ConfigError


def quadratic_penalty(
    named_parameters: Iterable[tuple[str, torch.Tensor]],
    importance: dict[str, torch.Tensor],
    anchor: dict[str, torch.Tensor],
) -> torch.Tensor:
    """``sum_i importance_i * (theta_i - anchor_i)^2`` over the parameters that have an importance.

    Returns a 0-d tensor (0 when ``importance`` is empty) that is differentiable in the parameters.
    """
    total = None
    for name, p in named_parameters:
        if name not in importance:
            continue
        term = (importance[name] * (p - anchor[name]).pow(2)).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def penalty_gradient(
    params: dict[str, torch.Tensor], importance: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], scale: float
) -> dict[str, torch.Tensor]:
    """Gradient of ``scale * quadratic_penalty`` at ``params``: ``2 * scale * importance * (theta - anchor)``."""
    return {n: 2.0 * scale * importance[n] * (p - anchor[n]) for n, p in params.items() if n in importance}


class PathIntegral:
    """Synaptic Intelligence's running path integral ``omega`` and consolidated importance ``Omega``.

    Usage per experience: :meth:`start` with the parameters before training, :meth:`step` after
    every optimizer step with the parameters and the gradient the step used (of the task loss,
    without the penalty), :meth:`consolidate` at the end. ``importance`` and ``anchor`` are then the
    ``Omega`` and ``theta*`` of the surrogate penalty ``c * sum Omega (theta - theta*)^2``.

    Args:
        xi: damping ``xi`` of ``omega / (Delta^2 + xi)`` (> 0).
    """

    def __init__(self, xi: float):
        if not xi > 0:
            raise ConfigError(f"xi (the damping of Synaptic Intelligence) must be > 0, got {xi}")
        self.xi = float(xi)
        self.omega: dict[str, torch.Tensor] = {}
        self.start_values: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}
        self.importance: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def start(self, params: dict[str, torch.Tensor]) -> None:
        """Begin an experience at ``params`` (omega reset to 0)."""
        self.start_values = {n: p.detach().clone() for n, p in params.items()}
        self.previous = {n: p.detach().clone() for n, p in params.items()}
        self.omega = {n: torch.zeros_like(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """Add ``-g * (theta_now - theta_before)`` for the step just taken; ``grads`` were taken before it."""
        for n, p in params.items():
            g = grads.get(n)
            now = p.detach()
            if g is not None:
                self.omega[n].sub_(g * (now - self.previous[n]))
            self.previous[n].copy_(now)

    @torch.no_grad()
    def consolidate(self, params: dict[str, torch.Tensor]) -> None:
        """End the experience: ``Omega <- relu(Omega + omega / (Delta^2 + xi))``, anchor at ``params``."""
        for n, p in params.items():
            delta = p.detach() - self.start_values[n]
            new = self.omega[n] / (delta.pow(2) + self.xi)
            self.importance[n] = (self.importance[n] + new if n in self.importance else new).clamp_min(0.0)
            self.anchor[n] = p.detach().clone()
        self.omega = {n: torch.zeros_like(w) for n, w in self.omega.items()}

    def state(self) -> dict:
        """Importance and anchor (the running omega is empty between experiences)."""
        return {"importance": dict(self.importance), "anchor": dict(self.anchor)}

    def load(self, state: dict) -> None:
        """Restore :meth:`state`."""
        self.importance = {n: t.clone() for n, t in state["importance"].items()}
        self.anchor = {n: t.clone() for n, t in state["anchor"].items()}


def output_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    outputs: torch.Tensor | None = None,
    chunk: int = 64,
) -> dict[str, torch.Tensor]:
    """MAS importance: mean over the rows of ``x`` of ``|d ||f(x)||_2^2 / d theta|`` per trainable parameter.

    ``outputs`` (bool, over the output units) restricts ``f`` to those units (e.g. the classes seen so
    far); per-example gradients come from ``torch.func.vmap`` in chunks of ``chunk`` rows.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def sq_norm(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        if outputs is not None:
            out = out[:, outputs]
        return out.pow(2).sum()

    per_example = vmap(grad(sq_norm), in_dims=(None, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was = model.training
    model.eval()
    try:
        for s in range(0, len(x), chunk):
            for n, g in per_example(params, x[s : s + chunk]).items():
                total[n] += g.abs().sum(0)
    finally:
        model.train(was)
    return {n: t / max(len(x), 1) for n, t in total.items()}
