"""A per-level softmax over a depth-2 label tree (coarse classes and the fine classes below them).

Used by the hierarchical label expansion setting (:func:`lifelong.scenarios.hierarchical`, Online
Continual Learning on Hierarchical Label Expansion, arXiv 2308.14374): coarse and fine classes share
one linear head, but each level has its own softmax over its seen classes. A fine-labelled example
also trains its coarse parent (read from the tree); a coarse-labelled example trains the coarse level
only, unless a method supplies a fine (pseudo-)target for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError


class LevelSoftmax:
    """Per-level softmax and cross-entropy from a depth-2 label tree.

    ``parents[c]`` is the coarse class id of class ``c`` or ``-1`` when ``c`` is itself coarse
    (:func:`lifelong.scenarios.hierarchical.class_parents`). The head has no parameters: it reads
    the logits of one linear layer over all classes.
    """

    def __init__(self, parents: Sequence[int], num_classes: int):
        parent = torch.as_tensor(list(parents), dtype=torch.long)
        if parent.shape != (num_classes,):
            raise ConfigError(
                f"parents has {len(parent)} entries but the stream has {num_classes} classes; "
                "pass parents=class_parents(stream)"
            )
        fine = parent >= 0
        if (parent < -1).any() or (parent >= num_classes).any() or (parent[parent[fine]] != -1).any():
            raise ConfigError("parents must point at coarse classes (whose own parent is -1); depth 2 only")
        self.parent = parent
        self.is_fine = fine
        # children[k, j]: class j is a fine child of coarse class k
        self.children = torch.zeros(num_classes, num_classes, dtype=torch.bool)
        idx = torch.nonzero(fine).flatten()
        self.children[parent[idx], idx] = True

    def targets(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse target, fine target or -1) per label: a fine label implies its parent."""
        fine_y = self.is_fine[y]
        coarse_t = torch.where(fine_y, self.parent[y], y)
        return coarse_t, torch.where(fine_y, y, torch.full_like(y, -1))

    def loss(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        seen: torch.Tensor,
        fine_targets: torch.Tensor | None = None,
        fine_weights: torch.Tensor | None = None,
        parent_targets: bool = True,
    ) -> torch.Tensor:
        """Coarse cross-entropy + fine cross-entropy, each summed over its examples and divided by the batch size.

        Each level's softmax runs over its seen classes only. ``fine_targets`` (default: the
        fine labels, -1 for coarse-labelled examples) lets a method add fine pseudo-targets;
        ``fine_weights`` weighs each example's fine term (default 1). With ``parent_targets``
        (default) a fine-labelled example also trains its coarse parent, read from the tree;
        without, each example trains only the level of its own label (the official HLE code's
        ER baseline, whose two heads see only the examples labelled at their level).
        """
        coarse_t, fine_t = self.targets(y)
        if fine_targets is not None:
            fine_t = fine_targets
        coarse_logits = logits.masked_fill(~(seen & ~self.is_fine), float("-inf"))
        if parent_targets:
            loss = F.cross_entropy(coarse_logits, coarse_t)
        else:
            own = ~self.is_fine[y]
            loss = F.cross_entropy(coarse_logits[own], coarse_t[own], reduction="sum") / len(y) if own.any() else 0.0
        has = fine_t >= 0
        if has.any():
            fine_logits = logits[has].masked_fill(~(seen & self.is_fine), float("-inf"))
            per = F.cross_entropy(fine_logits, fine_t[has], reduction="none")
            if fine_weights is not None:
                per = per * fine_weights[has]
            loss = loss + per.sum() / len(y)
        return loss

    def log_probs(self, scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """Per-level log-probabilities: a log-softmax over each level's seen classes (-inf elsewhere)."""
        out = torch.full_like(scores, float("-inf"))
        for level in (~self.is_fine, self.is_fine):
            m = seen & level
            if m.any():
                out[:, level] = torch.log_softmax(scores.masked_fill(~m, float("-inf")), 1)[:, level]
        return out


__all__ = ["LevelSoftmax"]
