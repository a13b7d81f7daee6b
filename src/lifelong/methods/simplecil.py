"""SimpleCIL: class-mean prototypes on a frozen pre-trained embedding, scored by cosine similarity.

Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity are All You
Need (arXiv 2303.07338). After each experience each new class's classifier weight is replaced by its
prototype, the mean embedding of its training examples; there is no training, so nothing is forgotten. The
PTM is the identity over cached features, or any frozen ``encoder``; the bookkeeping lives in
:class:`lifelong.heads.prototype.PrototypeHead`, shared with ``ncm`` and ``aper``.

Notes: docs/papers/simplecil.md
"""

from __future__ import annotations

from dataclasses import dataclass

from lifelong.methods.base_prototype import PrototypeConfig, PrototypeLearner
from lifelong.methods.registry import register


@dataclass
class SimpleCILConfig(PrototypeConfig):
    """SimpleCIL settings (the paper has none besides the PTM: prototypes + cosine)."""


@register("simplecil")
class SimpleCIL(PrototypeLearner):
    """Prototype classifier on a frozen pre-trained embedding (SimpleCIL, arXiv 2303.07338).

    Args:
        config: :class:`SimpleCILConfig`.
        seed: unused (SimpleCIL is deterministic); kept for the common constructor.
        encoder: frozen feature function; default the identity over flattened inputs.
    """

    config_class = SimpleCILConfig
