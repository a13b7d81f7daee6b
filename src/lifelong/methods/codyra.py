"""CoDyRA (``codyra``): continual learning with dynamic rank-selective LoRA, merged after each task.

Adaptive Rank, Reduced Forgetting: Knowledge Retention in Continual Learning Vision-Language Models with
Dynamic Rank-Selective LoRA (arXiv 2412.01004). Per experience a fresh CoDyRA adapter
(:mod:`lifelong.adapters.codyra`) is trained with the linear head, its gates soft-thresholded after every
step of the sparse phase, then folded into the backbone: inference runs the plain backbone + head. Built on
:class:`~lifelong.methods.base_lora.LoRASequence` (merge mode); ``loss_scope="current"`` (default) masks earlier
tasks' logits in the training loss, as the official code does.

Notes: docs/papers/codyra.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from lifelong.adapters import ALL_LINEAR, find_targets, fold_adapter
from lifelong.adapters.codyra import (
    GATE_INITS,
    CoDyRAConfig,
    KappaSchedule,
    effective_ranks,
    gate_parameters,
    proximal_step,
)
from lifelong.errors import ConfigError
from lifelong.methods.base import GradientConfig
from lifelong.methods.base_lora import LOSS_SCOPES, LoRASequence
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class CoDyRAMethodConfig(GradientConfig):
    """codyra settings: rank budget, gate init, sparsity schedule, backbone and the paper's LoRA training defaults."""

    #: defaults per data kind (library streams: a trained linear head, no task id at test). ``loss_scope``
    #: ``current`` (the official code's) relies on CLIP's text classifier, whose scores are comparable across
    #: tasks; with a linear head the new classes' logits are never trained against the old ones, so the
    #: classes just learned are not predicted (class-incremental digits: 0.0 % on the last experience right
    #: after learning it), hence ``seen``. The backbone is frozen: the embeddings need a hidden layer to adapt
    #: (hidden=() refused), and AdamW needs its own lr (the shared ones are SGD's). Picked on seed 0, mean
    #: accuracy on each experience right after learning it: pixels, split MNIST, lr in {1e-3, 3e-3, 1e-2,
    #: 3e-2, 5e-2}: 1e-2 (96.6 %), confirmed on digits; embeddings, CLINC150, hidden (256,), lr in
    #: {1e-3, 3e-3, 1e-2, 3e-2}: 1e-2 (95.5 %), confirmed on HWU64. No replay: final accuracy stays that of
    #: sequential fine-tuning. Paper reproductions (no data kind) keep the fields' defaults.
    data_defaults: ClassVar[dict[str, dict]] = {
        **GradientConfig.data_defaults,
        "pixels": {"lr": 1e-2, "loss_scope": "seen"},
        "embeddings": {"hidden": (256,), "lr": 1e-2, "loss_scope": "seen"},
    }

    backbone: str = hp(
        "mlp",
        "mlp (MLP over vector inputs, sizes from `hidden`) | minilm (all-MiniLM-L6-v2 over "
        "token ids, see lora_seq.text_token_dataset) | path of a local Hugging Face encoder",
    )
    rank: int = hp(16, "rank budget r of each task's adapter (paper: 16)")
    alpha: float = hp(0.0, "LoRA alpha (update scaled by alpha / r); 0: alpha = r, scaling 1 as in the official code")
    gate_init: str = hp("normal", "initial importance gates: normal (N(0, 1), official code) | ones")
    kappa: float = hp(0.005, "peak sparsity threshold kappa subtracted from |gate| per step (official runner: 0.005)")
    kappa_reference_steps: int = hp(
        500,
        "rescale kappa by this / steps-in-task so a short task shrinks the gates as "
        "much as the official 500-iteration run (0: use kappa as is)",
    )
    dense_fraction: float = hp(0.5, "fraction of each task's steps trained densely before the proximal steps start")
    kappa_levels: int = hp(50, "number of levels of the staircase from 0 to kappa (official: 50)")
    loss_scope: str = hp(
        "current",
        "classes in the training cross-entropy: current (official code: earlier "
        "tasks' logits set to -inf) | seen (all classes seen so far, as lora-seq)",
    )
    target_modules: tuple[str, ...] = hp(
        (ALL_LINEAR,),
        "Linear modules of the backbone to adapt: names matched as "
        "dotted suffixes (query,value) or all-linear (paper: all)",
    )
    init: str = hp("kaiming", "adapter init: kaiming (A Kaiming-uniform, B = 0, official) | gaussian")
    pad_id: int = hp(0, "padding token id of token-id inputs (text backbones)")
    eval_batch: int = hp(256, "inputs per forward pass when predicting (no effect on results)")
    # the paper's LoRA training settings (override the shared gradient defaults)
    optimizer: str = hp("adamw", "optimizer name (official: AdamW, weight decay 0)")
    lr: float = hp(5e-4, "learning rate of the adapter, its gates and the head (official: 5e-4)")
    lr_schedule: str = hp("cosine", "learning-rate schedule over each experience (official: cosine)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.loss_scope not in LOSS_SCOPES:
            raise ConfigError(f"loss_scope must be one of {LOSS_SCOPES}, got {self.loss_scope!r}")
        if self.gate_init not in GATE_INITS:
            raise ConfigError(f"gate_init must be one of {GATE_INITS}, got {self.gate_init!r}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"alpha must be >= 0 (0: alpha = rank), got {self.alpha}")
        if self.eval_batch < 1:
            raise ConfigError(f"eval_batch must be >= 1, got {self.eval_batch}")
        KappaSchedule(1, self.kappa, self.dense_fraction, self.kappa_levels, self.kappa_reference_steps)
        self.adapter_config()  # rank, init, targets

    def adapter_config(self) -> CoDyRAConfig:
        """The :class:`CoDyRAConfig` of each task's adapter."""
        targets = self.target_modules
        targets = ALL_LINEAR if tuple(targets) == (ALL_LINEAR,) else tuple(targets)
        return CoDyRAConfig(
            r=self.rank, alpha=(self.alpha or None), gate_init=self.gate_init, target_modules=targets, init=self.init
        )


@register("codyra")
class CoDyRA(LoRASequence):
    """CoDyRA learner: per-experience rank-selective adapter, proximal gate updates, merge-and-reset after the task.

    Attributes:
        rank_history: one entry per finished experience: ``{"experience", "mean", "min",
            "max", "budget", "per_layer": {layer: effective rank}}`` read just before the merge.
    """

    config_class = CoDyRAMethodConfig

    def __init__(self, config: CoDyRAMethodConfig, seed: int = 0):
        super().__init__(config, seed)
        self.rank_history: list[dict] = []
        self._schedule: KappaSchedule | None = None
        self._step = 0
        self._current: torch.Tensor | None = None  # bool mask of the current experience's classes

    def before_experience(self, experience: Experience) -> None:
        """New adapter + optimizer and current-class mask (as lora-seq), and the task's kappa schedule."""
        super().before_experience(experience)
        c = self.config
        n = len(experience.train_idx)
        if experience.online:
            steps = math.ceil(n / (experience.batch_size or c.batch_size))
        else:
            steps = c.epochs * math.ceil(n / c.batch_size)
        self._schedule = KappaSchedule(
            max(steps, 1), c.kappa, c.dense_fraction, c.kappa_levels, c.kappa_reference_steps
        )
        self._step = 0
        self._gates = gate_parameters(self.backbone, f"task{experience.index}")

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """The proximal step on every gate: ``lambda <- sign(lambda) max(|lambda| - kappa_t, 0)``."""
        self._step += 1
        t = self._schedule(self._step)
        if t > 0:
            proximal_step(self._gates, t)

    def after_experience(self, experience: Experience) -> None:
        """Record effective ranks, fold ``s B diag(lambda) A`` into the backbone and drop the adapter."""
        name = f"task{experience.index}"
        per = effective_ranks(self.backbone, name)
        vals = np.array(list(per.values()), dtype=float)
        self.rank_history.append(
            {
                "experience": int(experience.index),
                "mean": float(vals.mean()),
                "min": int(vals.min()),
                "max": int(vals.max()),
                "budget": int(self.config.rank),
                "per_layer": {k: int(v) for k, v in per.items()},
            }
        )
        fold_adapter(self.backbone, name)
        self.folded.append(name)
        self._gates, self._current = [], None
        self.optimizer = self.make_optimizer()  # over the head: what a restored learner rebuilds

    def effective_rank_summary(self) -> dict:
        """Mean effective rank per finished experience, its overall mean, and the fraction of the rank budget used."""
        means = [h["mean"] for h in self.rank_history]
        overall = float(np.mean(means)) if means else 0.0
        return {
            "per_experience": means,
            "mean": overall,
            "budget": int(self.config.rank),
            "fraction_of_budget": overall / self.config.rank,
        }

    def parameter_counts(self) -> tuple[int, int]:
        """(head + one task's adapter incl. its gates, all parameters: after the merge = backbone + head)."""
        trainable, total = super().parameter_counts()
        if self.model is None:
            return 0, 0
        cfg = self.config.adapter_config()
        return trainable + cfg.r * len(self._target_layers()), total

    def _target_layers(self) -> list[str]:
        cfg = self.config.adapter_config()
        return find_targets(self.backbone, cfg.target_modules, cfg.exclude_modules)

    # ---- checkpoints ----------------------------------------------------------------------------
    def extra_state(self) -> dict:
        return {**super().extra_state(), "rank_history": [dict(h) for h in self.rank_history]}

    def load_extra_state(self, state: dict) -> None:
        """The effective-rank history (lora-seq's kept/folded adapters are restored before the weights)."""
        self.rank_history = [dict(h) for h in state["rank_history"]]


__all__ = ["CoDyRA", "CoDyRAMethodConfig", "LOSS_SCOPES"]
