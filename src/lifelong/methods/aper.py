"""APER / ADAM: Adapt And Merge (Zhou, Cai, Ye, Zhan, Liu, *Revisiting Class-Incremental
Learning with Pre-Trained Models: Generalizability and Adaptivity are All You Need*,
IJCV 2024, arXiv:2303.07338; seed paper 43; the journal version calls it APER).

Algorithm (official ``zhoudw-zdw/RevisitingCIL``, ``models/adam_adapter.py`` /
``aper_ssf.py`` / ``aper_finetune.py``):

1. On the **first** experience only, adapt the pre-trained model (PTM) with a
   parameter-efficient module (or full fine-tuning) and a cosine classifier,
   cross-entropy over that experience's classes; SGD (momentum 0.9, lr 0.01,
   weight decay 5e-4, batch 48) with cosine annealing to ``min_lr = 0`` over
   ``tuned_epoch = 20`` epochs; adapter bottleneck ``ffn_num = 64``, scale 0.1
   (AdaptFormer, "lora" init: up-projection zero).
2. Freeze the adapted model. Every input is embedded as the concatenation
   ``[PTM(x), adapted(x)]`` ("merge").
3. After every experience (the first included, after adaptation) set the prototype
   of each new class to its mean concatenated embedding and classify by cosine
   similarity, exactly as SimpleCIL does.

**Simplification on cached features.** The paper adapts *inside* the ViT (an
AdaptFormer adapter parallel to every MLP block, SSF scale/shift after every
operation, VPT prompt tokens, or fine-tuning every weight). With a frozen feature
cache there are no layers to adapt, so the adapted model here is one trainable
module on top of the PTM's output embedding:

- ``adapter``: residual bottleneck ``g + s * up(relu(down(g)))`` (AdaptFormer's
  form and init, applied once to the embedding);
- ``ssf``: per-feature scale and shift ``gamma * g + beta`` (SSF's form and init);
- ``finetune``: a full ``d x d`` linear layer initialised to the identity (full
  fine-tuning of a last layer).

VPT has no counterpart without token inputs and is not offered. The embedding is
first RMS-normalised (``input_norm="rms"``: ``g = sqrt(d) * f / ||f||``), standing in
for the ViT's final LayerNorm that the paper's learning rates were set for; cosine
prototypes are unchanged by it. These are our choices, not the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import CheckpointError, ConfigError, NonFiniteLossError
from lifelong.heads.prototype import PrototypeHead, encode_in_batches
from lifelong.methods.base import ClassTracker
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register
from lifelong.methods.simplecil import frozen_encoder
from lifelong.optim import build_optimizer

ADAPTERS = ("adapter", "ssf", "finetune")


def rms_normalize(f: torch.Tensor) -> torch.Tensor:
    """Scale each row to norm ``sqrt(d)`` (unit root-mean-square per feature, like a LayerNorm'ed output)."""
    return F.normalize(f, dim=1) * math.sqrt(f.shape[1])


class BottleneckAdapter(nn.Module):
    """Residual bottleneck ``x + scale * up(relu(down(x)))`` (AdaptFormer, Chen et al. 2022).

    Initialised as in AdaptFormer's "lora" option: ``down`` Kaiming-uniform, ``up``
    and both biases zero, so the module starts as the identity.
    """

    def __init__(self, dim: int, bottleneck: int = 64, scale: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = float(scale)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.up(F.relu(self.down(x)))


class ScaleShift(nn.Module):
    """SSF (Lian et al. 2022): ``gamma * x + beta`` per feature, gamma ~ N(1, 0.02), beta ~ N(0, 0.02)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(dim).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.empty(dim).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


class IdentityLinear(nn.Linear):
    """A full ``d x d`` linear layer initialised to the identity with zero bias."""

    def __init__(self, dim: int):
        super().__init__(dim, dim)
        with torch.no_grad():
            self.weight.copy_(torch.eye(dim))
            self.bias.zero_()


def feature_adapter(kind: str, dim: int, bottleneck: int = 64, scale: float = 0.1) -> nn.Module:
    """A trainable module over ``dim``-d embeddings that starts at (or near) the identity.

    ``kind``: ``adapter`` (:class:`BottleneckAdapter`), ``ssf`` (:class:`ScaleShift`),
    ``finetune`` or ``linear`` (:class:`IdentityLinear`).
    """
    if kind == "adapter":
        return BottleneckAdapter(dim, bottleneck, scale)
    if kind == "ssf":
        return ScaleShift(dim)
    if kind in ("finetune", "linear"):
        return IdentityLinear(dim)
    raise ConfigError(f"unknown adapter kind {kind!r}; choose one of adapter, ssf, finetune")


class CosineClassifier(nn.Module):
    """``sigma * cos(x, w_c)`` with a learnable scale ``sigma`` (init 1), the official ``CosineLinear``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        stdv = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-stdv, stdv))
        self.sigma = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigma * F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T


@dataclass
class APERConfig(MethodConfig):
    """APER/ADAM settings; defaults from the official configs (``exps/aper_adapter/*.json``)."""

    adapter: str = hp("adapter", "adapted model: adapter (AdaptFormer-style bottleneck) | ssf | finetune "
                                 "(identity-init linear layer); applied to the embedding, see the module docstring")
    bottleneck: int = hp(64, "adapter bottleneck width (ffn_num)")
    adapter_scale: float = hp(0.1, "adapter output scale (AdaptFormer ffn_adapter_scalar)")
    epochs: int = hp(20, "adaptation epochs on the first experience (tuned_epoch)")
    lr: float = hp(0.01, "adaptation learning rate (init_lr)")
    min_lr: float = hp(0.0, "final learning rate of the cosine schedule (min_lr)")
    batch_size: int = hp(48, "adaptation mini-batch size")
    optimizer: str = hp("sgd", "optimizer name: see `lifelong list optimizers`")
    momentum: float = hp(0.9, "momentum (SGD only)")
    weight_decay: float = hp(5e-4, "weight decay of the adapter and the cosine head")
    merge: str = hp("concat", "embedding for the prototypes: concat [PTM, adapted] (ADAM) | adapted (ablation)")
    input_norm: str = hp("rms", "normalisation of the PTM embedding: rms (sqrt(d) * unit norm) | none")
    encode_batch: int = hp(1024, "inputs embedded per batch (no effect on results)")

    def validate(self) -> None:
        if self.adapter not in ADAPTERS:
            raise ConfigError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r} (VPT needs token inputs)")
        if self.merge not in ("concat", "adapted"):
            raise ConfigError(f"merge must be 'concat' or 'adapted', got {self.merge!r}")
        if self.input_norm not in ("rms", "none"):
            raise ConfigError(f"input_norm must be 'rms' or 'none', got {self.input_norm!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.bottleneck < 1 or self.encode_batch < 1:
            raise ConfigError("epochs must be >= 0 and batch_size, bottleneck, encode_batch >= 1; got "
                              f"{self.epochs}, {self.batch_size}, {self.bottleneck}, {self.encode_batch}")
        if not self.lr > 0 or self.min_lr < 0:
            raise ConfigError(f"lr must be > 0 and min_lr >= 0, got {self.lr}, {self.min_lr}")


@register("aper")
class APER:
    """Adapt the PTM on the first experience, freeze, then prototypes on [PTM, adapted] (seed paper 43).

    Args:
        config: :class:`APERConfig`.
        seed: seeds the adapter's initialisation and the mini-batch order.
        encoder: frozen PTM as a feature function; default the identity over flattened inputs.
    """

    config_class = APERConfig

    def __init__(self, config: APERConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        self.config = config
        self.seed = seed
        self.encoder = frozen_encoder(encoder)
        self.generator = torch.Generator().manual_seed(seed)
        self.classes = ClassTracker()
        self.head: PrototypeHead | None = None
        self.adapter: nn.Module | None = None
        self.dim: int | None = None  # PTM embedding dimension, known at adaptation
        self.adapted = False  # True once the first experience has been adapted to (then frozen)
        self.samples_seen = 0
        self.adaptation_losses: list[float] = []

    # ---- embeddings ------------------------------------------------------------------------
    def ptm_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen PTM embedding, normalised per ``input_norm``."""
        f = encode_in_batches(self.encoder, x, self.config.encode_batch).float()
        return rms_normalize(f) if self.config.input_norm == "rms" else f

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding used by the prototypes: [PTM, adapted] (or adapted only, or PTM before adaptation)."""
        g = self.ptm_features(x)
        if self.adapter is None:
            return g
        a = self.adapter(g)
        return torch.cat([g, a], dim=1) if self.config.merge == "concat" else a

    def _build_adapter(self, dim: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return feature_adapter(self.config.adapter, dim, self.config.bottleneck, self.config.adapter_scale)

    # ---- learning --------------------------------------------------------------------------
    def prepare(self, input_shape, num_classes: int) -> None:
        """Allocate the prototypes of ``num_classes`` classes."""
        self.classes.prepare(num_classes)
        self.head = PrototypeHead(num_classes)

    def learn(self, experience) -> None:
        """Adapt on the first experience (only), then add the experience's prototypes."""
        if self.head is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        self.classes.observe(experience, y)
        if not self.adapted:
            self._adapt(x, y, experience)
        self.head.update(self.features(x), y)
        self.samples_seen += len(y)

    def _adapt(self, x: torch.Tensor, y: torch.Tensor, experience) -> None:
        """Train adapter + cosine head with cross-entropy on ``(x, y)``, then freeze the adapter.

        An online experience gets one ordered pass in the stream's mini-batches.
        """
        c = self.config
        index = experience.index
        epochs = 1 if experience.online and c.epochs > 0 else c.epochs
        bs = experience.batch_size if experience.online and experience.batch_size else c.batch_size
        g = self.ptm_features(x)
        self.dim = int(g.shape[1])
        adapter = self._build_adapter(self.dim)
        present = torch.unique(y)
        target = torch.searchsorted(present, y)  # positions among this experience's classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            head = CosineClassifier(g.shape[1], len(present))
        params = [*adapter.parameters(), *head.parameters()]
        optimizer = build_optimizer(c.optimizer, params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=c.min_lr)
        n = len(y)
        for _ in range(epochs):
            order = torch.arange(n) if experience.online else torch.randperm(n, generator=self.generator)
            total = 0.0
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                loss = F.cross_entropy(head(adapter(g[idx])), target[idx])
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"aper: the adaptation loss became {loss.item()} on experience {index}; "
                                             "lower method.lr or check the inputs for NaN/inf")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            schedule.step()
            self.adaptation_losses.append(total / n)
        self.samples_seen += epochs * n
        for p in adapter.parameters():
            p.requires_grad_(False)
        self.adapter = adapter.eval()
        self.adapted = True

    # ---- inference ---------------------------------------------------------------------------
    def prototypes(self) -> torch.Tensor:
        """Prototype matrix (num_classes, d_merged): mean merged embedding of each class."""
        return self.head.means()

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Cosine similarity to each seen class's prototype in the merged embedding."""
        if self.head is None or self.head.sums is None:
            return torch.empty(len(x), 0)
        scores = self.head.scores(self.features(x), "cosine")
        return self.classes.mask(scores.float(), task_id)

    # ---- accounting and checkpoints ---------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(adapter parameters, adapter parameters + stored prototype entries)."""
        a = 0 if self.adapter is None else sum(p.numel() for p in self.adapter.parameters())
        protos = 0 if self.head is None or self.head.sums is None else self.head.sums.numel()
        return a, a + protos

    def state_dict(self) -> dict:
        """Adapter weights, prototypes, seen classes, RNG and counters."""
        if self.head is None:
            return {"built": False}
        state = {"built": True, "head": self.head.state(), "classes": self.classes.state(),
                 "samples_seen": self.samples_seen, "generator": self.generator.get_state(),
                 "adapted": self.adapted, "adaptation_losses": list(self.adaptation_losses)}
        if self.adapter is not None:
            state["adapter"] = dict(self.adapter.state_dict())
            state["dim"] = self.dim
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            head = PrototypeHead(len(state["head"]["counts"]))
            head.load(state["head"])
            tracker = ClassTracker()
            tracker.load(state["classes"])
            adapter = None
            if "adapter" in state:
                adapter = self._build_adapter(int(state["dim"]))
                adapter.load_state_dict(state["adapter"], strict=True)
                for p in adapter.parameters():
                    p.requires_grad_(False)
                adapter.eval()
            generator = torch.Generator()
            generator.set_state(state["generator"])
            adapted, samples = bool(state["adapted"]), int(state["samples_seen"])
            losses = [float(v) for v in state.get("adaptation_losses", [])]
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"checkpoint does not match aper with this config: {e}") from e
        self.head, self.classes, self.adapter, self.generator = head, tracker, adapter, generator
        self.adapted, self.samples_seen, self.adaptation_losses = adapted, samples, losses
        self.dim = int(state["dim"]) if "dim" in state else None

    test_config = {"epochs": 3, "batch_size": 16}
