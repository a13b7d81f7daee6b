"""GPICL tasks: a dataset's inputs under a random linear projection, its labels under a random permutation.

*General-Purpose In-Context Learning by Meta-Learning Transformers* (Kirsch et al., arXiv 2212.04458) builds many
tasks from one dataset: task ``t`` maps an input ``x`` to ``A_t x`` with ``A_t[i, j] ~ N(0, 1/d)`` and its label
``c`` to ``pi_t(c)`` for a random permutation ``pi_t``. A prompt is ``n_points`` random examples of one task.

- ``num_tasks=None``: a fresh task for every prompt (the "many tasks" regime, generalisation);
  ``num_tasks=T``: a fixed pool of ``T`` tasks (the "few tasks" regime, memorisation), each regenerated from its own
  seed (``pool_seed``), so the pool needs no storage beyond a cache of ``cache_floats``.
- ``bias_fraction=p``: the biased training distribution: a fraction ``p`` of each batch uses one fixed label
  permutation (projections stay random), as in the paper's intervention on the loss plateau.
- ``scale="variance"``: ``A ~ N(0, 1/d)`` (variance); ``"std"``: std ``1/d`` (the public replication's choice).

Tags: ``extra["task_id"]`` (pool index, -1 for a fresh task), ``extra["biased"]`` (bool).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lifelong.errors import ConfigError
from lifelong.incontext.prompts import Prompts


@dataclass
class ProjectionTasks:
    """Sampler of GPICL prompts over the examples ``x`` ``[N, ...]`` with labels ``y`` ``[N]`` in ``[0, num_classes)``.

    Attributes:
        x, y: the examples (flattened to ``[N, d]``; standardised per feature with ``standardise``).
        num_classes: label count (defaults to ``y.max() + 1``).
        n_points: examples per prompt.
        num_tasks: ``None`` for a fresh task per prompt, else the size of the fixed task pool.
        d_proj: projected dimension (default: the input dimension).
        bias_fraction: fraction of each batch sharing one fixed label permutation (``bias_seed``).
        permute_labels: whether tasks permute labels at all.
        scale: ``"variance"`` (``A ~ N(0, 1/d)``) or ``"std"`` (std ``1/d``).
        pool_seed: seeds the pool's tasks (task ``t`` uses seed ``pool_seed * 1_000_003 + t``).
        cache_floats: pool tasks are cached while the cache holds at most this many floats.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int | None = None
    n_points: int = 50
    num_tasks: int | None = None
    d_proj: int | None = None
    bias_fraction: float = 0.0
    permute_labels: bool = True
    scale: str = "variance"
    standardise: bool = True
    pool_seed: int = 0
    bias_seed: int = 12345
    cache_floats: int = 1 << 24
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        x = self.x.reshape(self.x.shape[0], -1).float()
        if self.standardise:
            x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
        self.x = x
        self.y = self.y.long()
        if self.num_classes is None:
            self.num_classes = int(self.y.max()) + 1
        self.d_in = int(x.shape[1])
        self.d_proj = self.d_proj or self.d_in
        if self.num_tasks is not None and self.num_tasks < 1:
            raise ConfigError(f"num_tasks must be >= 1 or None (fresh tasks), got {self.num_tasks}")
        if not 0 <= self.bias_fraction <= 1 or self.scale not in ("variance", "std") or self.n_points < 1:
            raise ConfigError("bias_fraction must be in [0, 1], scale 'variance' or 'std', n_points >= 1")
        if self.y.min() < 0 or self.y.max() >= self.num_classes:
            raise ConfigError(f"labels must lie in [0, {self.num_classes})")
        self._std = 1.0 / math.sqrt(self.d_in) if self.scale == "variance" else 1.0 / self.d_in
        g = torch.Generator().manual_seed(self.bias_seed)
        self._fixed_perm = torch.randperm(self.num_classes, generator=g)

    def _task(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Projection ``[d_proj, d_in]`` and label permutation of pool task ``t`` (from its own seed)."""
        if t in self._cache:
            return self._cache[t]
        g = torch.Generator().manual_seed(self.pool_seed * 1_000_003 + t)
        a = torch.randn(self.d_proj, self.d_in, generator=g) * self._std
        perm = torch.randperm(self.num_classes, generator=g) if self.permute_labels else torch.arange(self.num_classes)
        if (len(self._cache) + 1) * a.numel() <= self.cache_floats:
            self._cache[t] = (a, perm)
        return a, perm

    def sample(self, batch: int, generator: torch.Generator) -> Prompts:
        """``batch`` prompts; the first ``round(bias_fraction * batch)`` use the fixed label permutation."""
        g = generator
        idx = torch.randint(0, self.x.shape[0], (batch, self.n_points), generator=g)
        if self.num_tasks is None:
            task_id = torch.full((batch,), -1, dtype=torch.long)
            a = torch.randn(batch, self.d_proj, self.d_in, generator=g) * self._std
            perm = (
                torch.rand(batch, self.num_classes, generator=g).argsort(-1)
                if self.permute_labels
                else torch.arange(self.num_classes).expand(batch, -1)
            )
        else:
            task_id = torch.randint(0, self.num_tasks, (batch,), generator=g)
            uniq, inv = torch.unique(task_id, return_inverse=True)
            tasks = [self._task(int(t)) for t in uniq]  # one per distinct task, not per example
            a = torch.stack([tasks_a for tasks_a, _ in tasks])[inv]
            perm = torch.stack([p for _, p in tasks])[inv]
        biased = torch.arange(batch) < round(self.bias_fraction * batch)
        perm = torch.where(biased.unsqueeze(-1), self._fixed_perm.expand(batch, -1), perm)
        xs = torch.einsum("bpd,bnd->bnp", a, self.x[idx])
        ys = torch.gather(perm, 1, self.y[idx])
        return Prompts(xs, ys, "classes", self.num_classes, {"task_id": task_id, "biased": biased})
