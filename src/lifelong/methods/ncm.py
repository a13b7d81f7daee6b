"""Nearest class mean (NCM; Mensink et al. 2013, as used by iCaRL, Rebuffi et al. 2017).

Keeps a running sum and count of feature vectors per class and predicts the class whose mean is nearest
(Euclidean, or cosine on L2-normalised features); no gradient steps, nothing forgotten. Features are the
flattened inputs unless a frozen encoder is given as ``feature_fn``. It differs from SimpleCIL (both are
:class:`lifelong.methods.base_prototype.PrototypeLearner`) in the default metric (Euclidean) and, with the cosine
metric, in normalising each feature *before* it enters the class mean (iCaRL's NCM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lifelong.methods.base_prototype import PrototypeConfig, PrototypeLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register


@dataclass
class NCMConfig(PrototypeConfig):
    """NCM settings."""

    metric: str = hp("euclidean", "distance: euclidean | cosine")
    batch_size: int = hp(1024, "examples featurised per batch")


@register("ncm")
class NCM(PrototypeLearner):
    """Nearest-class-mean classifier over (by default) the flattened inputs."""

    config_class = NCMConfig

    def __init__(self, config: NCMConfig, seed: int = 0, feature_fn: Callable | None = None):
        super().__init__(config, seed, encoder=feature_fn)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Float64 features, L2-normalised under the cosine metric."""
        f = super().features(x).to(torch.float64)
        return F.normalize(f, dim=1) if self.config.metric == "cosine" else f
