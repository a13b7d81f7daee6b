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
- ``ways=k``: ``k``-way tasks over class subsets: a task's label permutation ``pi`` keeps the classes it maps to
  ``0..k-1`` (so a task is a projection plus an ordered subset of ``k`` classes); each point's label is drawn
  uniformly from ``0..k-1`` and its example from that label's class. Prompts then have ``k`` labels.
  A biased prompt uses the fixed permutation's subset and order.
- Examples are drawn **without replacement within a prompt** (as the public replication draws each sequence), so a
  late query never repeats an earlier example of its prompt: without ``ways`` the ``n_points`` examples are distinct;
  with ``ways`` the examples of each class are distinct. A sampler whose data cannot supply that (``n_points`` above
  the example count, or with ``ways`` above the smallest class's count) raises :class:`ConfigError` at construction.

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
        ways: ``None`` (every class, labels permuted) or ``k`` for ``k``-way tasks over class subsets.
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
    ways: int | None = None
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
        if self.ways is not None:
            if not 2 <= self.ways <= self.num_classes:
                raise ConfigError(f"ways must be in [2, num_classes={self.num_classes}] or None, got {self.ways}")
            counts = torch.bincount(self.y, minlength=self.num_classes)
            if bool((counts == 0).any()):
                raise ConfigError("ways=k needs at least one example of every class in [0, num_classes)")
            self._count = counts
            self._start = torch.cumsum(counts, 0) - counts
            if self.n_points > int(counts.min()):
                raise ConfigError(
                    f"n_points={self.n_points} exceeds the smallest class's {int(counts.min())} examples: a prompt "
                    "could not draw its points without replacement"
                )
        elif self.n_points > self.x.shape[0]:
            raise ConfigError(f"n_points={self.n_points} exceeds the {self.x.shape[0]} examples (no replacement)")
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
        """``batch`` prompts; the first ``round(bias_fraction * batch)`` use the fixed label permutation.

        With ``ways`` the prompts have ``ways`` labels (see the module docstring)."""
        g = generator
        n = self.x.shape[0]
        # a random order of all examples per prompt: its first n_points are distinct examples (no replacement)
        order = torch.rand(batch, n, generator=g).argsort(-1)
        idx = None if self.ways else order[:, : self.n_points]
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
        if self.ways:
            # label j of a task is the class its permutation maps to j; draw labels, then an example of that class
            subset = perm.argsort(-1)[:, : self.ways]
            ys = torch.randint(0, self.ways, (batch, self.n_points), generator=g)
            cls = torch.gather(subset, 1, ys)
            # per prompt, the random order grouped by class (stable): class c's examples in random order at
            # _start[c] .. _start[c] + _count[c] - 1; the r-th point of label j takes the r-th of its class
            by_class = torch.gather(order, 1, torch.sort(self.y[order], dim=-1, stable=True).indices)
            rank = (torch.nn.functional.one_hot(ys, self.ways).cumsum(1) - 1).gather(2, ys.unsqueeze(-1)).squeeze(-1)
            idx = torch.gather(by_class, 1, self._start[cls] + rank)
        else:
            ys = torch.gather(perm, 1, self.y[idx])
        xs = torch.einsum("bpd,bnd->bnp", a, self.x[idx])
        labels = self.ways or self.num_classes
        return Prompts(xs, ys, "classes", labels, {"task_id": task_id, "biased": biased})
