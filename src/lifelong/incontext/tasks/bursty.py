"""Bursty, Zipfian item-label sequences of Gaussian-cluster classes (in-context vs in-weights classification).

The data of *The mechanistic basis of data dependence and abrupt learning in an in-context classification task*
(Reddy, ICLR 2024, arXiv 2312.03002). ``K`` classes, each a Gaussian cluster around a mean ``mu_k ~ N(0, I_D / D)``
with a fixed label among ``L``; an item of class ``k`` is ``(mu_k + eps * eta) / sqrt(1 + eps^2)``, ``eta ~ N(0,
I_D / D)``. A prompt is ``N`` item-label pairs and a query item whose label is the target. Classes are drawn with
rank-frequency ``p_k ~ k^-alpha``. Burstiness ``B``: a bursty prompt holds ``N / B`` classes ``B`` times each and the
query's class is one of them; ``B = 0`` draws the ``N`` context classes and the query's class i.i.d. (the query's
class is then rarely in the context). Evaluation modes: ``"icl"`` (novel classes, fresh means, labels assigned at
random in each prompt), ``"ic2"`` (trained classes in bursty form, labels swapped away from their own) and ``"iwl"``
(trained classes, the query's class absent from the context: only the weights can answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lifelong.errors import ConfigError
from lifelong.incontext.prompts import Prompts

__all__ = ["BurstyClassification", "MODES", "zipf_probabilities"]

MODES = ("train", "icl", "ic2", "iwl")


def zipf_probabilities(k: int, alpha: float) -> torch.Tensor:
    """Rank-frequency ``p_r ~ r^-alpha`` over ranks ``1..k`` (``alpha = 0``: uniform), float64, summing to 1."""
    p = torch.arange(1, k + 1, dtype=torch.float64).pow(-float(alpha))
    return p / p.sum()


@dataclass
class BurstyClassification:
    """Sampler of bursty / Zipfian in-context classification prompts (one fixed "world" of classes per ``seed``).

    Args:
        num_classes: ``K``, the trained classes.
        num_labels: ``L`` (keep ``L > N``: with ``L = N`` the task is degenerate, see the errata of the study).
        dim: ``D``, the item dimension.
        context: ``N``, item-label pairs before the query (a multiple of ``burstiness`` when that is > 0).
        burstiness: ``B``, copies of each class in a bursty context; 0 for i.i.d. contexts.
        eps: within-class noise ``epsilon``.
        alpha: Zipf exponent of the class rank-frequency (0: uniform).
        p_bursty: fraction of training prompts that are bursty (the rest i.i.d.); ignored when ``burstiness == 0``.
        mode: ``"train"`` | ``"icl"`` | ``"ic2"`` | ``"iwl"`` (see the module docstring).
        eval_burstiness: ``B`` of the ``"icl"`` / ``"ic2"`` prompts (the same for every trained model).
        seed: seed of the world (class means, class labels); prompts are drawn from the ``generator`` of
            :meth:`sample`.

    Prompts hold ``N + 1`` points (the query last), ``kind="classes"``; ``extra`` holds ``"classes"`` ``[b, N + 1]``
    (class of each point; novel classes numbered ``K, K + 1, ...`` within a prompt), ``"query_in_context"`` ``[b]``,
    ``"novel"`` ``[b]`` and ``"loss_mask"`` ``[b, N + 1]`` (only the query is scored).
    """

    num_classes: int = 1024
    num_labels: int = 16
    dim: int = 32
    context: int = 8
    burstiness: int = 4
    eps: float = 0.1
    alpha: float = 0.0
    p_bursty: float = 1.0
    mode: str = "train"
    eval_burstiness: int = 4
    seed: int = 0
    means: torch.Tensor = field(init=False, repr=False)
    labels: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.num_classes < 2 or self.num_labels < 2 or self.dim < 1 or self.context < 1:
            raise ConfigError("num_classes and num_labels must be >= 2, dim and context >= 1")
        for name in ("burstiness", "eval_burstiness"):
            b = getattr(self, name)
            if b < 0 or (b > 0 and self.context % b):
                raise ConfigError(f"{name} must be 0 or divide context={self.context}, got {b}")
        if self.eval_burstiness == 0:
            raise ConfigError("eval_burstiness must be >= 1: in-context test prompts need the query's class in context")
        n_groups = self.context // self.eval_burstiness
        if self.num_labels < n_groups:
            raise ConfigError(f"num_labels ({self.num_labels}) must be >= context / eval_burstiness ({n_groups})")
        if self.burstiness and self.context // self.burstiness > self.num_classes:
            raise ConfigError("context / burstiness must not exceed num_classes")
        if not 0.0 <= self.p_bursty <= 1.0:
            raise ConfigError(f"p_bursty must be in [0, 1], got {self.p_bursty}")
        if self.eps < 0 or self.alpha < 0:
            raise ConfigError("eps and alpha must be >= 0")
        g = torch.Generator().manual_seed(int(self.seed))
        self.means = torch.randn(self.num_classes, self.dim, generator=g) / math.sqrt(self.dim)
        # balanced labels: class k gets label (k mod L) of a random permutation of the classes
        order = torch.randperm(self.num_classes, generator=g)
        self.labels = torch.empty(self.num_classes, dtype=torch.long)
        self.labels[order] = torch.arange(self.num_classes) % self.num_labels
        self.probs = zipf_probabilities(self.num_classes, self.alpha).float()

    def with_mode(self, mode: str) -> BurstyClassification:
        """The same world sampled in another ``mode``."""
        return BurstyClassification(
            self.num_classes,
            self.num_labels,
            self.dim,
            self.context,
            self.burstiness,
            self.eps,
            self.alpha,
            self.p_bursty,
            mode,
            self.eval_burstiness,
            self.seed,
        )

    # -- pieces -------------------------------------------------------------------------------------------------
    def _items(self, means: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        noise = torch.randn(means.shape, generator=g) / math.sqrt(self.dim)
        return (means + self.eps * noise) / math.sqrt(1.0 + self.eps**2)

    def _bursty_classes(self, b: int, burst: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Context class slots ``[b, N]`` (``N / burst`` distinct slot ids 0.., each ``burst`` times, shuffled) and
        the query's slot ``[b]``; slots are mapped to classes by the caller."""
        n, groups = self.context, self.context // burst
        slots = torch.arange(groups).repeat_interleave(burst).expand(b, n)
        perm = torch.rand(b, n, generator=g).argsort(dim=1)
        slots = slots.gather(1, perm)
        query = torch.randint(groups, (b,), generator=g)
        return slots, query

    def _draw_distinct(self, b: int, m: int, g: torch.Generator) -> torch.Tensor:
        """``m`` distinct trained classes per prompt, drawn by rank-frequency."""
        return torch.multinomial(self.probs.expand(b, -1), m, replacement=False, generator=g)

    # -- sampling -----------------------------------------------------------------------------------------------
    def sample(self, batch: int, generator: torch.Generator) -> Prompts:
        """``batch`` prompts of this sampler's ``mode`` (vectorised; no per-prompt Python)."""
        g, n, b = generator, self.context, batch
        if self.mode == "train":
            return self._train(b, g)
        if self.mode == "iwl":
            return self._iwl(b, g)
        burst = self.eval_burstiness
        groups = n // burst
        slots, qslot = self._bursty_classes(b, burst, g)
        slot_all = torch.cat([slots, qslot[:, None]], dim=1)  # [b, N + 1]
        # distinct labels for the slots of one prompt, drawn at random among the L labels
        slot_labels = torch.rand(b, self.num_labels, generator=g).argsort(dim=1)[:, :groups]
        if self.mode == "icl":
            slot_means = torch.randn(b, groups, self.dim, generator=g) / math.sqrt(self.dim)
            classes = self.num_classes + slot_all
            novel = torch.ones(b, dtype=torch.bool)
        else:  # ic2: trained classes with labels other than their own
            slot_classes = self._draw_distinct(b, groups, g)
            slot_means = self.means[slot_classes]
            own = self.labels[slot_classes]
            # move a label that equals the class's own, or repeats an earlier slot's, to the next label; repeat
            for _ in range(4 * self.num_labels):
                dup = (slot_labels[:, :, None] == slot_labels[:, None, :]).tril(-1).any(dim=2)
                bad = (slot_labels == own) | dup
                if not bad.any():
                    break
                slot_labels = torch.where(bad, (slot_labels + 1) % self.num_labels, slot_labels)
            else:  # pragma: no cover - needs num_labels close to context / eval_burstiness
                raise ConfigError("could not assign swapped labels: raise num_labels")
            classes = slot_classes.gather(1, slot_all)
            novel = torch.zeros(b, dtype=torch.bool)
        idx = slot_all[:, :, None].expand(-1, -1, self.dim)
        xs = self._items(slot_means.gather(1, idx), g)
        ys = slot_labels.gather(1, slot_all)
        return self._prompts(xs, ys, classes, novel)

    def _train(self, b: int, g: torch.Generator) -> Prompts:
        n = self.context
        # i.i.d. classes for every prompt (used where the prompt is not bursty)
        iid = torch.multinomial(self.probs, b * (n + 1), replacement=True, generator=g).view(b, n + 1)
        if self.burstiness > 0 and self.p_bursty > 0:
            groups = n // self.burstiness
            slots, qslot = self._bursty_classes(b, self.burstiness, g)
            slot_classes = self._draw_distinct(b, groups, g)
            bursty = slot_classes.gather(1, torch.cat([slots, qslot[:, None]], dim=1))
            is_bursty = torch.rand(b, generator=g) < self.p_bursty
            classes = torch.where(is_bursty[:, None], bursty, iid)
        else:
            classes = iid
        xs = self._items(self.means[classes], g)
        return self._prompts(xs, self.labels[classes], classes, torch.zeros(b, dtype=torch.bool))

    def _iwl(self, b: int, g: torch.Generator) -> Prompts:
        n = self.context
        query = torch.multinomial(self.probs, b, replacement=True, generator=g)
        ctx = torch.multinomial(self.probs, b * n, replacement=True, generator=g).view(b, n)
        # redraw context classes that equal the query's, until none is left (the query's class is never in context)
        for _ in range(100):
            same = ctx == query[:, None]
            if not same.any():
                break
            redraw = torch.multinomial(self.probs, int(same.sum()), replacement=True, generator=g)
            ctx = ctx.masked_scatter(same, redraw)
        else:  # pragma: no cover - needs a class of probability ~1
            raise ConfigError("could not draw contexts without the query's class: lower alpha")
        classes = torch.cat([ctx, query[:, None]], dim=1)
        xs = self._items(self.means[classes], g)
        return self._prompts(xs, self.labels[classes], classes, torch.zeros(b, dtype=torch.bool))

    def _prompts(self, xs: torch.Tensor, ys: torch.Tensor, classes: torch.Tensor, novel: torch.Tensor) -> Prompts:
        b, n1 = ys.shape
        in_ctx = (classes[:, :-1] == classes[:, -1:]).any(dim=1)
        mask = torch.zeros(b, n1, dtype=torch.bool)
        mask[:, -1] = True
        return Prompts(
            xs.float(),
            ys.long(),
            "classes",
            self.num_labels,
            {"classes": classes.long(), "query_in_context": in_ctx, "novel": novel, "loss_mask": mask},
        )
