"""Elastic Weight Consolidation (EWC; Kirkpatrick et al., PNAS 2017), online form.

After each experience the diagonal Fisher information F of the parameters is
estimated from per-example gradients of the log-likelihood of the true labels
(the empirical Fisher, computed with ``torch.func.vmap``), and the loss of later
experiences adds ``(lambda / 2) * sum_i F_i (theta_i - theta*_i)^2``. With several
experiences the Fishers are accumulated as ``F <- gamma * F + F_new`` and
``theta*`` is the latest solution: online EWC (Schwarz et al., ICML 2018), which
equals summing per-task penalties when gamma = 1 up to the anchor point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from lifelong.errors import ConfigError
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class EWCConfig(GradientConfig):
    """EWC settings."""

    ewc_lambda: float = hp(100.0, "penalty strength lambda")
    gamma: float = hp(1.0, "decay of the accumulated Fisher (online EWC); 1 = plain sum")
    fisher_samples: int = hp(1024, "training examples used to estimate the Fisher (0 = all)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.ewc_lambda < 0 or not 0 <= self.gamma <= 1:
            raise ConfigError("ewc_lambda must be >= 0 and gamma in [0, 1]")
        if self.fisher_samples < 0:
            raise ConfigError(f"fisher_samples must be >= 0 (0 = all training examples), got {self.fisher_samples}")


@register("ewc")
class EWC(GradientLearner):
    """Online elastic weight consolidation with an empirical diagonal Fisher."""

    config_class = EWCConfig

    def __init__(self, config: EWCConfig, seed: int = 0):
        super().__init__(config, seed)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        ce = F.cross_entropy(self.logits(x), y)
        if not self.fisher:
            return ce
        penalty = sum(
            (self.fisher[n] * (p - self.anchor[n]).pow(2)).sum()
            for n, p in self.model.named_parameters()
            if n in self.fisher
        )
        return ce + 0.5 * self.config.ewc_lambda * penalty

    def after_experience(self, experience: Experience) -> None:
        x, y = experience.train_tensors()
        k = self.config.fisher_samples
        if k and k < len(y):
            idx = torch.randperm(len(y), generator=self.generator)[:k]
            x, y = x[idx], y[idx]
        new = self.empirical_fisher(x, y)
        g = self.config.gamma
        self.fisher = {n: (g * self.fisher[n] + f if n in self.fisher else f) for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def empirical_fisher(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 32) -> dict[str, torch.Tensor]:
        """Mean over examples of the squared per-example gradient of -log p(y|x)."""
        params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
        buffers = dict(self.model.named_buffers())
        seen = self.classes.seen

        def nll(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, (p, buffers), (xi.unsqueeze(0),))
            return F.cross_entropy(out.masked_fill(~seen, float("-inf")), yi.unsqueeze(0))

        per_example = vmap(grad(nll), in_dims=(None, 0, 0))
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for s in range(0, len(y), chunk):
            grads = per_example(params, x[s : s + chunk], y[s : s + chunk])
            for n, g in grads.items():
                total[n] += g.pow(2).sum(0)
        return {n: t / len(y) for n, t in total.items()}

    def extra_state(self) -> dict:
        return {"fisher": dict(self.fisher), "anchor": dict(self.anchor)}

    def load_extra_state(self, state: dict) -> None:
        self.fisher = dict(state["fisher"])
        self.anchor = dict(state["anchor"])
