"""L2P: a pool of prompts picked by key-query matching, prepended to a frozen pre-trained text encoder's input.

Learning to Prompt for Continual Learning (Wang et al., CVPR 2022, arXiv 2112.08485). The query is the frozen
encoder's pooled feature of the sentence (computed once); the ``top_n`` prompts whose keys are most similar
(cosine) are put at the input of all-MiniLM-L6-v2 (prompt tuning); the head reads MiniLM's mean-pooled
sentence tokens (``pool=prompts``: the mean of the outputs at the prompt positions, official
``head_type='prompt'``); a surrogate loss pulls the chosen keys toward the query. Prompts, keys and the
head train at every task, with the logits of the classes outside the current experience masked. Reads
token ids (``data.representation=tokens``).

Defaults from the official PyTorch port's CIFAR-100 config (``l2p-pytorch/configs/cifar100_l2p.py``): pool
10, length 5, top-5, uniform init of prompts and keys, pull coefficient 0.1, Adam lr 0.03 constant, 5 epochs,
grad-norm clip 1.0, batch 16 per device. The lr is the port's *nominal* value: its ``main.py`` rescales it by
batch / 256 (``unscale_lr=True``), so the official run trains at 0.03 x 16 / 256 = 0.0019, 16x below the 0.03
used here — pick it on validation. Departures: the head reads the sentence tokens by default (a sentence
of ~10 tokens next to 25 prompt tokens leaves the prompt positions' outputs nearly input-independent; on the
tiny test BERT ``pool=prompts`` stays at chance); per-sentence prompt choice at training and test
(the official ``batchwise_prompt`` majority vote over a test batch lets test sentences influence each other);
no label smoothing.

Notes: docs/baselines/prompting.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lifelong.adapters.prompts import PROMPT_POOLS, KeyedPromptPool, prompted_encode
from lifelong.errors import ConfigError
from lifelong.methods.base_prompt import PromptConfig, PromptLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register


@dataclass
class L2PConfig(PromptConfig):
    """L2P settings; defaults from ``l2p-pytorch/configs/cifar100_l2p.py`` (the paper's CIFAR-100 setting)."""

    pool_size: int = hp(10, "prompts in the pool (M)")
    length: int = hp(5, "tokens per prompt (L_p)")
    top_n: int = hp(5, "prompts picked per sentence (N)")
    pull_coeff: float = hp(0.1, "weight of the surrogate key-query loss (pull_constraint_coeff)")
    pool: str = hp(
        "mean",
        "head input: mean (MiniLM's pooling of the sentence tokens) | prompts (mean output at the prompts, official)",
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if not 1 <= self.top_n <= self.pool_size or self.length < 1:
            raise ConfigError(
                f"need 1 <= top_n <= pool_size and length >= 1, got {self.top_n}, {self.pool_size}, {self.length}"
            )
        if self.pull_coeff < 0:
            raise ConfigError(f"pull_coeff must be >= 0, got {self.pull_coeff}")
        if self.pool not in PROMPT_POOLS:
            raise ConfigError(f"pool must be one of {PROMPT_POOLS}, got {self.pool!r}")


@register("l2p")
class L2P(PromptLearner):
    """Key-matched prompt pool at the input of a frozen text encoder (L2P, arXiv 2112.08485).

    Args:
        config: :class:`L2PConfig`.
        seed: seeds the prompts, keys, head and batch order.
    """

    config_class = L2PConfig

    def build_prompt(self, dim: int, layers: int) -> nn.Module:
        """The pool: ``pool_size`` prompts of ``length`` tokens and their keys (uniform init)."""
        c = self.config
        return KeyedPromptPool(c.pool_size, c.length, dim, dim, c.top_n, self.generator)

    def begin_task(self, task: int) -> list[nn.Parameter]:
        """Every prompt and key trains (L2P freezes nothing)."""
        return list(self.prompt.parameters())

    def features(self, x: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features with the top-N prompts at the input; the surrogate loss ``-coeff * sum(cos)/n``."""
        idx, sim = self.prompt.select(query)
        feats = prompted_encode(self.backbone, x, input_prompts=self.prompt.tokens(idx), pool=self.config.pool)
        return feats, -self.config.pull_coeff * sim.sum(1).mean()
