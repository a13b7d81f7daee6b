"""Nearest class mean (NCM; Mensink et al. 2013, as used by iCaRL, Rebuffi et al. 2017).

Keeps a running sum and count of feature vectors per class and predicts the class
whose mean is nearest (Euclidean, or cosine on L2-normalised features). It never
forgets what it has stored and needs no gradient steps. Features are the flattened
inputs by default; a frozen encoder plugs in through ``feature_fn``.

It is :class:`lifelong.methods.simplecil.SimpleCIL` with two differences: the
default metric is Euclidean, and with the cosine metric each feature vector is
L2-normalised *before* it enters the class mean (iCaRL's NCM), where SimpleCIL
averages the raw embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lifelong.methods.registry import register
from lifelong.methods.simplecil import SimpleCIL, SimpleCILConfig
from lifelong.methods.config import hp


@dataclass
class NCMConfig(SimpleCILConfig):
    """NCM settings."""

    metric: str = hp("euclidean", "distance: euclidean | cosine")
    batch_size: int = hp(1024, "examples featurised per batch")


@register("ncm")
class NCM(SimpleCIL):
    """Nearest-class-mean classifier over (by default) the flattened inputs."""

    config_class = NCMConfig

    def __init__(self, config: NCMConfig, seed: int = 0, feature_fn: Callable | None = None):
        super().__init__(config, seed, encoder=feature_fn)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Float64 features, L2-normalised under the cosine metric."""
        f = super().features(x).to(torch.float64)
        return F.normalize(f, dim=1) if self.config.metric == "cosine" else f
