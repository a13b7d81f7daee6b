"""Forgetting schedules that re-initialise a model's embeddings during training (an ``on_step`` hook of
:func:`lifelong.incontext.train.train`).

Active forgetting re-initialises the token embeddings every ``every`` steps for the whole run; temporary forgetting
does so only while ``step < until`` and then trains normally (*Dual Process Learning: Controlling Use of In-Context
vs. In-Weights Strategies with Weight Forgetting*, arXiv 2406.00053, after the active forgetting of *Improving
Language Plasticity via Pretraining with Active Forgetting*, arXiv 2307.01163). At each reset the optimizer's state
of the reset parameters is dropped, so Adam's moments and bias-correction count start again for them, as the
official ``AdamEF`` optimizer does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lifelong.errors import ConfigError

__all__ = ["EmbeddingReset", "token_embeddings"]


def token_embeddings(model: nn.Module) -> list[nn.Module]:
    """The input-token embedding of a prompt model (``model.x_in``), the default target of :class:`EmbeddingReset`."""
    module = getattr(model, "x_in", None)
    if module is None:
        raise ConfigError(f"{type(model).__name__} has no x_in embedding; pass modules= to EmbeddingReset")
    return [module]


class EmbeddingReset:
    """``on_step`` hook: re-initialise embeddings after steps ``every, 2 * every, ...`` while ``step < until``.

    Args:
        every: steps between resets (``k``); 0 switches the hook off (the vanilla arm).
        until: no reset at or after this step (``N`` of temporary forgetting); ``None`` resets for the whole run,
            give the run's step count to keep the final step from being a reset.
        modules: ``modules(model) -> list of modules`` whose ``reset_parameters()`` is called (default
            :func:`token_embeddings`).
    """

    def __init__(
        self,
        every: int,
        until: int | None = None,
        modules: Callable[[nn.Module], list[nn.Module]] = token_embeddings,
    ):
        if every < 0 or (until is not None and until < 0):
            raise ConfigError(f"every and until must be >= 0, got every={every}, until={until}")
        self.every, self.until, self.modules = int(every), until, modules
        self.resets: list[int] = []

    def due(self, step: int) -> bool:
        """Whether a reset follows optimizer step ``step``."""
        return bool(self.every) and step % self.every == 0 and (self.until is None or step < self.until)

    def __call__(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Reset the embeddings (and drop their optimizer state) when :meth:`due`."""
        if not self.due(step):
            return
        for module in self.modules(model):
            module.reset_parameters()
            if optimizer is not None:
                for p in module.parameters():
                    optimizer.state.pop(p, None)
        self.resets.append(int(step))
