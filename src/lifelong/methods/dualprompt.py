"""DualPrompt: a shared G-prompt and per-task E-prompts as attention prefixes inside a frozen text encoder.

DualPrompt: Complementary Prompting for Rehearsal-free Continual Learning (Wang et al., ECCV 2022,
arXiv 2204.04799). Prefix tuning in all-MiniLM-L6-v2's self-attention: the G-prompt (shared by all tasks) in
layers ``g_layers``, one E-prompt per task in layers ``e_layers``. Each E-prompt has a key; in training the
current task's E-prompt is used and its key pulled toward the queries (the frozen encoder's pooled
features); at test the E-prompt whose key best matches the query (top-1) is used. Earlier tasks' E-prompts
and keys are frozen; the G-prompt and the head keep training, with the logits of the classes outside the
current experience masked. Reads token ids (``data.representation=tokens``).

Defaults: G-prompt length 5 in layers 0-1, E-prompt length 20 in layers 2-4 (the paper's L_g=5, L_e=20; a
prompt of length L is L key and L value prefix positions, as the PyTorch port's (2, L, d) prefixes; the port's
CIFAR-100 config itself sets ``--length 5``), pull coefficient 1.0, Adam lr 0.03 constant, 5 epochs, grad
clip 1.0, batch 16 (scaled for 2 CPU cores). The lr is the port's *nominal* value: its ``main.py`` rescales it by
batch / 256 (``unscale_lr=True``: 0.03 x 24 / 256 = 0.0028 is the lr it trains with), so 0.03 here is ~10x the
official step size — pick it on validation. ``tasks`` E-prompts are allocated up front (official pool size
10). Departures: per-sentence E-prompt choice at test (no batch-wise vote); matching only over the keys of
tasks trained so far; no label smoothing; each task's E-prompt starts from a fresh uniform draw unless
``shared_prompt_pool`` (the port's default: a copy of the previous task's trained E-prompt).

Notes: docs/baselines/prompting.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lifelong.adapters.prompts import DualPrefixes, prompted_encode
from lifelong.errors import ConfigError
from lifelong.methods.base_prompt import PromptConfig, PromptLearner, layers_fit
from lifelong.methods.config import hp
from lifelong.methods.registry import register


@dataclass
class DualPromptConfig(PromptConfig):
    """DualPrompt settings; defaults from the paper and ``dualprompt-pytorch/configs/cifar100_dualprompt.py``."""

    g_layers: tuple[int, ...] = hp((0, 1), "layers holding the G-prompt (prefix)")
    e_layers: tuple[int, ...] = hp((2, 3, 4), "layers holding the E-prompts (prefix)")
    g_length: int = hp(5, "G-prompt length (key and value prefix positions per layer)")
    e_length: int = hp(20, "E-prompt length (key and value prefix positions per layer)")
    tasks: int = hp(10, "E-prompts allocated: the most experiences it can learn (official pool size 10)")
    pull_coeff: float = hp(1.0, "weight of the key-query matching loss (pull_constraint_coeff)")
    shared_prompt_pool: bool = hp(
        False,
        "start each task's E-prompt from the previous task's trained one (the PyTorch port's CIFAR-100 default True)",
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.g_length < 1 or self.e_length < 1 or self.tasks < 1 or not self.e_layers:
            raise ConfigError(
                "g_length, e_length, tasks must be >= 1 and e_layers non-empty; got "
                f"{self.g_length}, {self.e_length}, {self.tasks}, {self.e_layers}"
            )
        if self.pull_coeff < 0:
            raise ConfigError(f"pull_coeff must be >= 0, got {self.pull_coeff}")
        for what, layers in (("g_layers", self.g_layers), ("e_layers", self.e_layers)):
            if len(set(layers)) != len(layers) or any(i < 0 for i in layers):
                raise ConfigError(f"{what} must list distinct layer indices >= 0, got {layers}")


@register("dualprompt")
class DualPrompt(PromptLearner):
    """G-prompt + per-task key-matched E-prompts as attention prefixes (DualPrompt, arXiv 2204.04799).

    Args:
        config: :class:`DualPromptConfig`.
        seed: seeds the prompts, keys, head and batch order.
    """

    config_class = DualPromptConfig

    def build_prompt(self, dim: int, layers: int) -> nn.Module:
        """G-prompt and ``tasks`` E-prompts with keys (uniform init)."""
        c = self.config
        layers_fit(c.g_layers, layers, "g_layers")
        layers_fit(c.e_layers, layers, "e_layers")
        return DualPrefixes(
            c.g_layers,
            c.e_layers,
            c.g_length,
            c.e_length,
            c.tasks,
            dim,
            dim,
            self.generator,
            init_from_previous=c.shared_prompt_pool,
        )

    def begin_task(self, task: int) -> list[nn.Parameter]:
        """The G-prompt and this task's E-prompt and key train."""
        return self.prompt.begin_task(task)

    def end_task(self) -> None:
        """Freeze this task's E-prompt and key."""
        self.prompt.end_task()

    def features(self, x: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence features with the G- and (active or matched) E-prefixes; the matching loss."""
        prefixes, pull = self.prompt.prefixes(query)
        return prompted_encode(self.backbone, x, prefixes=prefixes), self.config.pull_coeff * pull
