"""GDumb (Prabhu, Torr & Dokania, "GDumb: A Simple Approach that Questions Our Progress in Continual
Learning", ECCV 2020).

A greedy class-balanced sampler fills the memory from the stream
(:class:`lifelong.memory.GreedyClassBalancedBuffer`), and after each experience a fresh model is trained
from scratch on the memory alone; nothing is trained on the stream itself. Defaults are the official
code's MNIST settings: 128 passes over the memory, batch 16, SGD (momentum 0.9) with SGDR cosine warm
restarts (T0 = 1 pass, Tmult = 2) from ``lr = 0.05`` to ``min_lr = 0.0005``, weight decay 1e-6,
gradient-norm clipping at 10; memory 200 (ER's). Departures: the MLP is the library's (no batch norm);
CutMix, which the paper uses on image CNNs only, is omitted; the model is retrained at each experience's
end (so every row of the accuracy matrix is GDumb's) rather than only when evaluated; the official
``main.py`` runs its first pass at ``0.1 * lr`` (warm start) and steps the SGDR schedule once per pass
(the lr is constant within a pass, cycles restarting at passes 1, 2, 4, 8, ...), where here the cosine is
followed per step from pass 0; and the official loop reports the best test accuracy over the passes
(model selection on the test split), which is not reproduced: the model after the last pass is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError, NonFiniteLossError
from lifelong.memory import GreedyClassBalancedBuffer
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class GDumbConfig(GradientConfig):
    """GDumb settings (the official code's MNIST defaults)."""

    epochs: int = hp(128, "passes over the memory when training from scratch (GDumb trains on nothing else)")
    batch_size: int = hp(16, "mini-batch size of the training on the memory")
    lr: float = hp(0.05, "learning rate at each warm restart (the paper's maxlr)")
    weight_decay: float = hp(1e-6, "L2 weight decay")
    buffer_size: int = hp(200, "memory capacity in examples (greedy class-balanced)")
    min_lr: float = hp(0.0005, "learning rate at the end of each cosine cycle (SGDR eta_min)")
    clip: float = hp(10.0, "gradient-norm clipping threshold (0: none)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr], got min_lr={self.min_lr}, lr={self.lr}")
        if self.clip < 0:
            raise ConfigError(f"clip must be >= 0 (0: no clipping), got {self.clip}")
        if self.lr_schedule != "constant" or self.warmup_steps:
            raise ConfigError(
                "GDumb runs its own SGDR schedule (lr -> min_lr, warm restarts); leave lr_schedule=constant "
                "and warmup_steps=0"
            )


def sgdr_lr(lr: float, min_lr: float, epoch: float) -> float:
    """SGDR's learning rate at (fractional) ``epoch`` with T0 = 1 and Tmult = 2 (Loshchilov & Hutter 2017)."""
    cycle = math.floor(math.log2(epoch + 1))  # cycles of 1, 2, 4, ... epochs start at 0, 1, 3, 7, ...
    t_cur, t_i = epoch - (2**cycle - 1), 2**cycle
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t_cur / t_i))


@register("gdumb")
class GDumb(GradientLearner):
    """GDumb: greedy class-balanced memory, and a model trained from scratch on it after each experience."""

    config_class = GDumbConfig

    def __init__(self, config: GDumbConfig, seed: int = 0):
        super().__init__(config, seed)
        self.buffer = GreedyClassBalancedBuffer(config.buffer_size)

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Offer the experience to the memory, then train a freshly initialised model on the memory only."""
        self.buffer.add(self.generator, x=x, y=y)
        init_seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.model = self.build_model(self.input_shape, self.num_classes)
        self.model.train()
        self.optimizer = self.make_optimizer()
        m = self.buffer.all()
        mx, my = m["x"], m["y"]
        n, bs, c = len(my), self.config.batch_size, self.config
        steps = math.ceil(n / bs)
        params = [p for p in self.model.parameters() if p.requires_grad]
        for epoch in range(c.epochs):
            order = torch.randperm(n, generator=self.generator)
            for k in range(steps):
                for group in self.optimizer.param_groups:
                    group["lr"] = sgdr_lr(c.lr, c.min_lr, epoch + k / steps)
                idx = order[k * bs : (k + 1) * bs]
                loss = F.cross_entropy(self.logits(mx[idx]), my[idx])
                value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLossError(f"gdumb: the loss became {value} during experience {experience.index}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, c.clip)
                self.optimizer.step()
                self.samples_seen += len(idx)

    def extra_state(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
