"""Boolean function classes over ``x in {±1}^n`` with labels ``±1``, one function per prompt.

The function classes and input distributions of *Understanding In-Context Learning in Transformers and LLMs by
Learning to Learn Discrete Functions* (Bhattamishra et al., arXiv 2310.03016; official code ``incontext-bool``,
``src/bool_tasks.py``), vectorised over the batch:

- ``conjunction`` / ``disjunction``: each variable is a positive literal, a negative literal or absent with
  probabilities 0.15 / 0.15 / 0.7; inputs are uniform except that each one is forced to satisfy the conjunction
  (falsify the disjunction) with probability ``force`` = 0.3, so both labels occur (uniform inputs would make almost
  every conjunction label -1);
- ``sparse_disjunction``: an OR of ``k`` = 4 positive literals (same forcing);
- ``sparse_parity``: parity of ``k`` = 2 random variables (``x_f = +1`` counted as 1); ``parity``: of a uniformly
  random subset;
- ``majority``: ``sign(sum of a random subset (p 0.3) - 0.5)``; ``int_halfspace``: ``sign(w.x - 0.5)``,
  ``w in {-3..3}^n``;
- ``dnf`` / ``cnf``: 3 clauses (literals with p 0.1 / 0.1 / 0.8); inputs forced to satisfy one random clause
  (p 0.35, DNF) or falsify one (p 0.3, CNF).

``extra["w"]`` holds the function (``[batch, n]``, or ``[batch, 3, n]`` for DNF/CNF).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lifelong.errors import ConfigError
from lifelong.incontext.prompts import Prompts

CLASSES = (
    "conjunction",
    "disjunction",
    "sparse_disjunction",
    "sparse_parity",
    "parity",
    "majority",
    "int_halfspace",
    "dnf",
    "cnf",
)


def _literals(shape: tuple[int, ...], p_literal: float, g: torch.Generator) -> torch.Tensor:
    """Literal signs in {-1, 0, +1}: each +1 and -1 with probability ``p_literal``."""
    u = torch.rand(shape, generator=g)
    return torch.where(u < p_literal, 1.0, torch.where(u < 2 * p_literal, -1.0, 0.0))


def _k_subset(batch: int, n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``[batch, n]`` 0/1 with exactly ``k`` ones at random positions."""
    idx = torch.rand(batch, n, generator=g).argsort(-1)[:, :k]
    return torch.zeros(batch, n).scatter_(1, idx, 1.0)


def _force(x: torch.Tensor, w: torch.Tensor, p: float, sign: float, g: torch.Generator) -> torch.Tensor:
    """Set ``x_f = sign * w_f`` wherever ``w_f != 0``, for each point with probability ``p``."""
    hit = (torch.rand(x.shape[:2], generator=g) < p).unsqueeze(-1) & (w != 0).unsqueeze(1)
    return torch.where(hit, sign * w.unsqueeze(1).expand_as(x), x)


def _parity(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    ones = ((x + 1) / 2) @ w.unsqueeze(-1)
    return (ones.squeeze(-1) % 2) * 2 - 1


@dataclass
class BooleanFunctions:
    """Sampler of Boolean-function prompts.

    Attributes:
        cls: one of :data:`CLASSES`.
        n_dims: input variables ``n``.
        n_points: examples per prompt.
        force: probability that an input is forced to satisfy a conjunction / DNF clause (falsify a disjunction /
            CNF clause); the official 0.3 (0.35 for DNF).
        k: variables of a sparse parity (2) or literals of a sparse disjunction (4).
    """

    cls: str = "conjunction"
    n_dims: int = 10
    n_points: int = 30
    force: float | None = None
    k: int | None = None

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ConfigError(f"unknown Boolean function class {self.cls!r}; choose one of: {', '.join(CLASSES)}")
        if self.n_dims < 1 or self.n_points < 1:
            raise ConfigError("BooleanFunctions needs n_dims >= 1 and n_points >= 1")
        if self.k is None:
            self.k = 4 if self.cls == "sparse_disjunction" else 2
        if self.force is None:
            self.force = 0.35 if self.cls == "dnf" else 0.3
        if not 1 <= self.k <= self.n_dims or not 0 <= self.force <= 1:
            raise ConfigError(f"k must be in [1, n_dims] and force in [0, 1]; got k={self.k}, force={self.force}")

    def sample(self, batch: int, generator: torch.Generator) -> Prompts:
        """``batch`` prompts of ``n_points`` inputs labelled by one random function of the class each."""
        g, n, c = generator, self.n_dims, self.cls
        x = torch.randint(0, 2, (batch, self.n_points, n), generator=g).float() * 2 - 1
        if c in ("conjunction", "disjunction", "sparse_disjunction"):
            w = _literals((batch, n), 0.15, g) if c != "sparse_disjunction" else _k_subset(batch, n, self.k, g)
            size = w.abs().sum(-1, keepdim=True)
            if c == "conjunction":
                x = _force(x, w, self.force, 1.0, g)
                y = torch.sign((x @ w.unsqueeze(-1)).squeeze(-1) - size + 1)
            else:
                x = _force(x, w, self.force, -1.0, g)
                y = torch.sign((x @ w.unsqueeze(-1)).squeeze(-1) + size - 1)
        elif c in ("sparse_parity", "parity"):
            w = (
                _k_subset(batch, n, self.k, g)
                if c == "sparse_parity"
                else torch.randint(0, 2, (batch, n), generator=g).float()
            )
            y = _parity(x, w)
        elif c == "majority":
            w = (torch.rand(batch, n, generator=g) < 0.3).float()
            y = torch.sign((x @ w.unsqueeze(-1)).squeeze(-1) - 0.5)
        elif c == "int_halfspace":
            w = torch.randint(-3, 4, (batch, n), generator=g).float()
            y = torch.sign((x @ w.unsqueeze(-1)).squeeze(-1) - 0.5)
        else:  # dnf / cnf: 3 clauses
            w = _literals((batch, 3, n), 0.1, g)
            clause = torch.randint(0, 3, (batch,), generator=g)
            chosen = w[torch.arange(batch), clause]
            x = _force(x, chosen, self.force, 1.0 if c == "dnf" else -1.0, g)
            size = w.abs().sum(-1).unsqueeze(1)  # [b, 1, 3]
            dots = torch.einsum("bnf,bcf->bnc", x, w)
            if c == "dnf":
                y = torch.sign(dots - size + 1).amax(-1)
            else:
                y = torch.sign(dots + size - 1).amin(-1)
        return Prompts(x, y, "binary", extra={"w": w})
