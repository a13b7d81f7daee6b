"""CODA-Prompt: prompts composed from a pool of components by query attention, as prefixes in a frozen encoder.

CODA-Prompt: COntinual Decomposed Attention-based Prompting for Rehearsal-Free Continual Learning (Smith et
al., CVPR 2023, arXiv 2211.13218). In each prefix layer the prompt is the sum of ``pool`` components weighted
by ``cos(q * A_m, K_m)`` for the query ``q`` (the frozen encoder's pooled feature, computed once), attention
vector ``A_m`` and key ``K_m``; its first half are the prefix keys, the second the values (prefix tuning in
all-MiniLM-L6-v2's self-attention). Each task owns ``pool // tasks`` components (with their keys and attention
vectors), initialised by Gram-Schmidt orthogonal to every earlier component and trained only during that task
(earlier ones frozen), plus an optional orthogonality loss. The head trains throughout with the logits of the
classes outside the current experience masked. Reads token ids (``data.representation=tokens``).

Defaults from the official code (``GT-RIPL/CODA-Prompt``: ``experiments/cifar-100.sh``,
``configs/cifar-100_prompt.yaml``, ``models/zoo.py``): pool 100, length 8, layers 0-4, 10 tasks, Adam lr 0.001,
cosine schedule, weight decay 0, orthogonality weight 0 (the official script's value since its per-task
Gram-Schmidt re-init; the paper's loss is available with ``ortho_weight > 0``). Scaled for 2 CPU cores: 5 epochs
(official 20) and batch 16 (official 128). Departures: new components are orthogonalised against the span of
the trained earlier ones (the official projection assumes those are still orthogonal); no grad clip in the
official code (clip 1.0 here, as L2P / DualPrompt, for one shared loop).

Notes: docs/baselines/prompting.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lifelong.adapters.prompts import CodaPrompt as CodaPool
from lifelong.adapters.prompts import prompted_encode
from lifelong.errors import ConfigError
from lifelong.methods.base_prompt import PromptConfig, PromptLearner, layers_fit
from lifelong.methods.config import hp
from lifelong.methods.registry import register


@dataclass
class CodaPromptConfig(PromptConfig):
    """CODA-Prompt settings; defaults from the official code (epochs and batch scaled for CPU)."""

    lr: float = hp(0.001, "Adam learning rate of the components, keys, attention vectors and head")
    schedule: str = hp("cosine", "learning-rate schedule over each experience's epochs: constant | cosine")
    pool: int = hp(100, "prompt components per layer, shared out over `tasks` tasks")
    length: int = hp(8, "component length (first half prefix keys, second half values)")
    layers: tuple[int, ...] = hp((0, 1, 2, 3, 4), "layers holding the composed prefixes")
    tasks: int = hp(10, "tasks the pool is split over: the most experiences it can learn")
    ortho_weight: float = hp(0.0, "weight of the orthogonality loss on components, keys, attention (official 0)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.length < 2 or self.length % 2:
            raise ConfigError(f"length must be even and >= 2 (keys | values), got {self.length}")
        if self.tasks < 1 or self.pool < self.tasks:
            raise ConfigError(f"need tasks >= 1 and pool >= tasks, got pool {self.pool}, tasks {self.tasks}")
        if self.ortho_weight < 0:
            raise ConfigError(f"ortho_weight must be >= 0, got {self.ortho_weight}")
        if not self.layers or len(set(self.layers)) != len(self.layers) or any(i < 0 for i in self.layers):
            raise ConfigError(f"layers must list distinct layer indices >= 0, got {self.layers}")


@register("coda-prompt")
class CODAPrompt(PromptLearner):
    """Attention-composed prompt components as prefixes in a frozen text encoder (CODA-Prompt, arXiv 2211.13218).

    Args:
        config: :class:`CodaPromptConfig`.
        seed: seeds the components' initialisation, the head and the batch order.
    """

    config_class = CodaPromptConfig

    def build_prompt(self, dim: int, layers: int) -> nn.Module:
        """The component pool (filled task by task in :meth:`begin_task`)."""
        c = self.config
        layers_fit(c.layers, layers, "layers")
        if c.pool > dim:
            raise ConfigError(f"pool ({c.pool}) > encoder width ({dim}): keys cannot all be orthogonal")
        return CodaPool(c.layers, c.pool, c.length, c.tasks, dim, dim)

    def begin_task(self, task: int) -> list[nn.Parameter]:
        """Gram-Schmidt-initialise this task's components; they (only) train."""
        return self.prompt.begin_task(task, self.generator)

    def end_task(self) -> None:
        """Freeze this task's components."""
        self.prompt.end_task()

    def features(self, x: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence features with the composed prefixes; the orthogonality loss."""
        prefixes, ortho = self.prompt.prefixes(query, self.config.ortho_weight)
        return prompted_encode(self.backbone, x, prefixes=prefixes), ortho
