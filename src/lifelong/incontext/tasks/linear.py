"""Noisy linear regression prompts: ``y = w·x + noise`` with ``w ~ N(0, I_d)``, ``x ~ N(0, I_d)``.

The function class of *What learning algorithm is in-context learning? Investigations with linear models*
(Akyürek et al., arXiv 2211.15661): a fresh ``w`` per prompt, ``n_points`` examples, Gaussian label noise of standard
deviation ``noise``. The prompt's ``w`` is kept in ``extra["w"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lifelong.errors import ConfigError
from lifelong.incontext.prompts import Prompts


@dataclass
class LinearRegression:
    """Sampler of noisy linear-regression prompts.

    Attributes:
        d: input dimension.
        n_points: examples per prompt.
        noise: standard deviation of the label noise (``sigma``).
        w_scale: standard deviation of each weight.
    """

    d: int = 4
    n_points: int = 12
    noise: float = 0.0
    w_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.d < 1 or self.n_points < 1 or self.noise < 0 or self.w_scale <= 0:
            raise ConfigError(f"LinearRegression needs d, n_points >= 1, noise >= 0, w_scale > 0; got {self}")

    def sample(self, batch: int, generator: torch.Generator) -> Prompts:
        """``batch`` prompts; ``extra["w"]`` holds each prompt's weights ``[batch, d]``."""
        w = torch.randn(batch, self.d, generator=generator) * self.w_scale
        xs = torch.randn(batch, self.n_points, self.d, generator=generator)
        ys = torch.einsum("bnd,bd->bn", xs, w)
        if self.noise > 0:
            ys = ys + self.noise * torch.randn(batch, self.n_points, generator=generator)
        return Prompts(xs, ys, "regression", extra={"w": w})
