"""APER / ADAM: adapt the pre-trained model on the first experience, then prototypes on [PTM, adapted].

Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity are All You
Need (arXiv 2303.07338; the journal version calls the method APER). On the first experience only, a
parameter-efficient module (``adapter``, ``ssf``) or a full linear layer (``finetune``) is trained with a
cosine classifier; it is then frozen, every input is embedded as ``[PTM(x), adapted(x)]`` and classified by
cosine similarity to class-mean prototypes, as in SimpleCIL. On cached features the adapted module sits on
top of the PTM's output embedding, not inside the transformer.

Notes: docs/papers/simplecil.md
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.adapters.feature import feature_adapter, rms_normalize
from lifelong.encoders.frozen import frozen_encoder
from lifelong.errors import CheckpointError, ConfigError, NonFiniteLossError
from lifelong.heads.cosine import CosineClassifier
from lifelong.heads.prototype import PrototypeHead, encode_in_batches
from lifelong.methods.base import ClassTracker, LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register
from lifelong.optim import build_optimizer

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

ADAPTERS = ("adapter", "ssf", "finetune")


@dataclass
class APERConfig(MethodConfig):
    """APER/ADAM settings; defaults from the official configs (``exps/aper_adapter/*.json``)."""

    adapter: str = hp(
        "adapter",
        "adapted model: adapter (AdaptFormer-style bottleneck) | ssf | finetune "
        "(identity-init linear layer); applied to the embedding, see the module docstring",
    )
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
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.adapter not in ADAPTERS:
            raise ConfigError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r} (VPT needs token inputs)")
        if self.merge not in ("concat", "adapted"):
            raise ConfigError(f"merge must be 'concat' or 'adapted', got {self.merge!r}")
        if self.input_norm not in ("rms", "none"):
            raise ConfigError(f"input_norm must be 'rms' or 'none', got {self.input_norm!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.bottleneck < 1 or self.encode_batch < 1:
            raise ConfigError(
                "epochs must be >= 0 and batch_size, bottleneck, encode_batch >= 1; got "
                f"{self.epochs}, {self.batch_size}, {self.bottleneck}, {self.encode_batch}"
            )
        if not self.lr > 0 or self.min_lr < 0:
            raise ConfigError(f"lr must be > 0 and min_lr >= 0, got {self.lr}, {self.min_lr}")


@register("aper")
class APER(LearnerBase):
    """Adapt the PTM on the first experience, freeze, then prototypes on [PTM, adapted] (APER, arXiv 2303.07338).

    Args:
        config: :class:`APERConfig`.
        seed: seeds the adapter's initialisation and the mini-batch order.
        encoder: frozen PTM as a feature function; default the identity over flattened inputs.
    """

    config_class = APERConfig

    def __init__(self, config: APERConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        super().__init__(config, seed)
        self.encoder = frozen_encoder(encoder)
        self.generator = torch.Generator().manual_seed(seed)
        self.head: PrototypeHead | None = None
        self.adapter: nn.Module | None = None
        self.dim: int | None = None  # PTM embedding dimension, known at adaptation
        self.adapted = False  # True once the first experience has been adapted to (then frozen)
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
    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Allocate the prototypes of ``num_classes`` classes."""
        self.classes.prepare(num_classes)
        self.head = PrototypeHead(num_classes)

    def learn(self, experience: Experience) -> None:
        """Adapt on the first experience (only), then add the experience's prototypes."""
        if self.head is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        self.classes.observe(experience, y)
        if not self.adapted:
            self._adapt(x, y, experience)
        self.head.update(self.features(x), y)
        self.samples_seen += len(y)

    def _adapt(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
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
                idx = order[s : s + bs]
                loss = F.cross_entropy(head(adapter(g[idx])), target[idx])
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"aper: the adaptation loss became {loss.item()} on experience {index}; "
                        "lower method.lr or check the inputs for NaN/inf"
                    )
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
        state = {
            "built": True,
            "head": self.head.state(),
            "classes": self.classes.state(),
            "samples_seen": self.samples_seen,
            "generator": self.generator.get_state(),
            "adapted": self.adapted,
            "adaptation_losses": list(self.adaptation_losses),
        }
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
