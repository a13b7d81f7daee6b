"""SLCA: slow learner, per-experience heads and classifier alignment on Gaussian pseudo-features.

SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model (arXiv 2303.05118).
Sequential fine-tuning where the representation learns at 1/100 of the head's learning rate, one linear head
per experience (earlier heads frozen, loss over the current classes) and, from the second experience on, the
heads re-trained on samples from each class's stored Gaussian with logit normalisation. On cached features
the representation is a trainable module over the frozen embedding (``representation``); with
``backbone_lr_scale=1`` and ``ca=False`` the learner is the paper's Seq FT baseline.

Notes: docs/papers/slca.md
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
from lifelong.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from lifelong.heads.prototype import ClassGaussians, encode_in_batches
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience

REPRESENTATIONS = ("linear", "adapter", "ssf", "none")


@dataclass
class SLCAConfig(MethodConfig):
    """SLCA settings; defaults from ``exps/slca/slca_cifar.json`` and ``models/slca.py``."""

    representation: str = hp(
        "linear",
        "trainable representation over the frozen embedding: linear (identity-init "
        "d x d) | adapter (residual bottleneck) | ssf | none",
    )
    bottleneck: int = hp(64, "bottleneck width when representation=adapter")
    epochs: int = hp(20, "epochs per experience")
    milestones: tuple[int, ...] = hp((18,), "epochs after which the lr is multiplied by lr_decay")
    lr_decay: float = hp(0.1, "lr factor at each milestone")
    lr: float = hp(0.01, "classifier learning rate (also the CA learning rate)")
    backbone_lr_scale: float = hp(0.01, "representation lr = lr * this (bcb_lrscale; 1 = Seq FT, 0 = frozen)")
    batch_size: int = hp(128, "mini-batch size")
    momentum: float = hp(0.9, "SGD momentum")
    weight_decay: float = hp(5e-4, "SGD weight decay")
    ca: bool = hp(True, "classifier alignment after each experience (False: slow learner only)")
    ca_epochs: int = hp(5, "classifier-alignment epochs")
    ca_samples: int = hp(256, "pseudo-features sampled per class per CA epoch (also the CA batch size)")
    ca_logit_norm: float = hp(0.1, "logit-normalisation temperature during CA (0 = plain cross-entropy)")
    ca_mean_shrink: bool = hp(True, "scale old experiences' class means by 0.9 + 0.1 (t+1)/(T+1) (official code)")
    cov_ridge: float = hp(1e-4, "added to the diagonal of each class covariance")
    input_norm: str = hp("rms", "normalisation of the frozen embedding: rms (sqrt(d) * unit norm) | none")
    encode_batch: int = hp(1024, "inputs embedded per batch (no effect on results)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(f"representation must be one of {REPRESENTATIONS}, got {self.representation!r}")
        if self.input_norm not in ("rms", "none"):
            raise ConfigError(f"input_norm must be 'rms' or 'none', got {self.input_norm!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.ca_epochs < 0 or self.ca_samples < 1:
            raise ConfigError(
                "epochs, batch_size, ca_samples must be >= 1 and ca_epochs >= 0; got "
                f"{self.epochs}, {self.batch_size}, {self.ca_samples}, {self.ca_epochs}"
            )
        if not self.lr > 0 or self.backbone_lr_scale < 0 or self.ca_logit_norm < 0 or self.cov_ridge < 0:
            raise ConfigError(
                "lr must be > 0 and backbone_lr_scale, ca_logit_norm, cov_ridge >= 0; got "
                f"{self.lr}, {self.backbone_lr_scale}, {self.ca_logit_norm}, {self.cov_ridge}"
            )


@register("slca")
class SLCA(LearnerBase):
    """Slow learner + per-experience heads + classifier alignment on Gaussian pseudo-features (SLCA, arXiv 2303.05118).

    Args:
        config: :class:`SLCAConfig`.
        seed: seeds the representation's and heads' initialisation, batch order and CA sampling.
        encoder: frozen pre-trained feature function; default the identity over flattened inputs.
    """

    config_class = SLCAConfig

    def __init__(self, config: SLCAConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        super().__init__(config, seed)
        self.encoder = frozen_encoder(encoder)
        self.generator = torch.Generator().manual_seed(seed)
        self.num_classes: int | None = None
        self.dim: int | None = None
        self.representation: nn.Module | None = None
        self.head_w: torch.Tensor | None = None  # (C, d) stage-1 heads (what the next experience trains on)
        self.head_b: torch.Tensor | None = None
        self.aligned_w: torch.Tensor | None = None  # (C, d) heads after classifier alignment (used to predict)
        self.aligned_b: torch.Tensor | None = None
        self.gaussians: ClassGaussians | None = None
        self.experience_classes: list[list[int]] = []  # classes of each learned experience, in order
        self.last_param_groups: list[dict] = []  # lr per parameter group of the last stage-1 optimizer

    # ---- modules ------------------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Allocate per-class state for ``num_classes`` classes."""
        self.num_classes = int(num_classes)
        self.classes.prepare(num_classes)
        self.gaussians = ClassGaussians(num_classes, self.config.cov_ridge)

    def _build(self, dim: int) -> None:
        self.dim = dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.config.representation == "none":
                self.representation = nn.Identity()
            else:
                self.representation = feature_adapter(self.config.representation, dim, self.config.bottleneck)
        self.head_w = torch.zeros(self.num_classes, dim)
        self.head_b = torch.zeros(self.num_classes)
        self.aligned_w, self.aligned_b = self.head_w.clone(), self.head_b.clone()

    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen pre-trained embedding, normalised per ``input_norm``."""
        f = encode_in_batches(self.encoder, x, self.config.encode_batch).float()
        return rms_normalize(f) if self.config.input_norm == "rms" else f

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the heads classify (frozen embedding -> trainable module)."""
        self.representation.eval()
        return self.representation(self.frozen_features(x))

    # ---- learning -----------------------------------------------------------------------------
    def learn(self, experience: Experience) -> None:
        """Slow-learner training on the experience, class statistics, then classifier alignment."""
        if self.num_classes is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        self.classes.observe(experience, y)
        g = self.frozen_features(x)
        if self.representation is None:
            self._build(int(g.shape[1]))
        elif g.shape[1] != self.dim:
            raise DataError(f"experience {experience.index} has {g.shape[1]}-d features, the model {self.dim}-d")
        current = torch.unique(y)
        self.experience_classes.append(current.tolist())
        self._init_heads(current)
        self._stage1(g, y, current, experience)
        self.gaussians.update(self.features(x), y)
        self.aligned_w, self.aligned_b = self.head_w.clone(), self.head_b.clone()
        if self.config.ca and self.config.ca_epochs > 0 and len(self.experience_classes) > 1:
            self._align(experience.index)

    def _init_heads(self, current: torch.Tensor) -> None:
        """A new head (trunc-normal std 0.02, zero bias) for the experience's classes not seen before."""
        fresh = current[~self.gaussians.known[current]]
        if len(fresh):
            w = torch.empty(len(fresh), self.dim)
            nn.init.trunc_normal_(w, std=0.02, a=-2.0, b=2.0, generator=self.generator)
            self.head_w[fresh] = w
            self.head_b[fresh] = 0.0

    def stage1_param_groups(self, w: nn.Parameter, b: nn.Parameter) -> list[dict]:
        """SGD groups: representation at ``lr * backbone_lr_scale``, head at ``lr`` (official ``_stage1_training``)."""
        c = self.config
        groups = []
        rep = [p for p in self.representation.parameters()]
        if rep and c.backbone_lr_scale > 0:
            groups.append({"params": rep, "lr": c.lr * c.backbone_lr_scale, "name": "representation"})
        groups.append({"params": [w, b], "lr": c.lr, "name": "head"})
        return groups

    def _stage1(self, g: torch.Tensor, y: torch.Tensor, current: torch.Tensor, experience: Experience) -> None:
        """Train the representation (slowly) and the current experience's head; online streams get one ordered pass."""
        c = self.config
        index = experience.index
        epochs = 1 if experience.online else c.epochs
        bs = experience.batch_size if experience.online and experience.batch_size else c.batch_size
        w = nn.Parameter(self.head_w[current].clone())
        b = nn.Parameter(self.head_b[current].clone())
        groups = self.stage1_param_groups(w, b)
        trains_rep = any(grp["name"] == "representation" for grp in groups)
        for p in self.representation.parameters():
            p.requires_grad_(trains_rep)
        optimizer = torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        self.last_param_groups = [{"name": grp["name"], "lr": grp["lr"]} for grp in optimizer.param_groups]
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(c.milestones), gamma=c.lr_decay)
        target = torch.searchsorted(current, y)
        self.representation.train()
        n = len(y)
        for _ in range(epochs):
            order = torch.arange(n) if experience.online else torch.randperm(n, generator=self.generator)
            for s in range(0, n, bs):
                idx = order[s : s + bs]
                z = self.representation(g[idx])
                loss = F.cross_entropy(z @ w.T + b, target[idx])
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"slca: the loss became {loss.item()} during experience {index}; "
                        "lower method.lr or check the inputs for NaN/inf"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
        self.samples_seen += epochs * n
        self.representation.eval()
        for p in self.representation.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            self.head_w[current] = w.detach()
            self.head_b[current] = b.detach()

    def _align(self, index: int) -> None:
        """Classifier alignment: re-train every seen head on Gaussian pseudo-features.

        Official ``_stage2_compact_classifier``.
        """
        c = self.config
        seen = self.gaussians.classes()
        position = torch.full((self.num_classes,), -1, dtype=torch.long)
        position[seen] = torch.arange(len(seen))
        T = len(self.experience_classes) - 1
        exp_of = torch.zeros(self.num_classes, dtype=torch.long)  # experience index of each class
        for t, cls in enumerate(self.experience_classes):
            exp_of[torch.as_tensor(cls)] = t
        col_exp = exp_of[seen]  # experience of each logit column
        scale = None
        if c.ca_mean_shrink:
            scale = torch.ones(self.num_classes, dtype=torch.float64)
            for t, cls in enumerate(self.experience_classes):
                scale[torch.as_tensor(cls)] = 0.9 + 0.1 * (t + 1) / (T + 1)
        w = nn.Parameter(self.head_w[seen].clone())
        b = nn.Parameter(self.head_b[seen].clone())
        optimizer = torch.optim.SGD([w, b], lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.ca_epochs)
        for _ in range(c.ca_epochs):
            xs, ys = self.gaussians.sample(c.ca_samples, self.generator, scale)
            order = torch.randperm(len(ys), generator=self.generator)
            xs, ts = xs[order], position[ys[order]]
            for s in range(0, len(ts), c.ca_samples):
                logits = xs[s : s + c.ca_samples] @ w.T + b
                if c.ca_logit_norm > 0:
                    # per-experience L2 norm of the logits, averaged over experiences (official ca_with_logit_norm)
                    sq = torch.zeros(len(logits), T + 1).index_add_(1, col_exp, logits.pow(2))
                    norms = (sq.sqrt() + 1e-7).mean(1, keepdim=True)
                    logits = logits / norms / c.ca_logit_norm
                loss = F.cross_entropy(logits, ts[s : s + c.ca_samples])
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"slca: the alignment loss became {loss.item()} after experience {index}; "
                        "lower method.lr or set method.cov_ridge higher"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
        with torch.no_grad():
            self.aligned_w[seen] = w.detach()
            self.aligned_b[seen] = b.detach()

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Aligned-head logits over the classes seen so far."""
        if self.representation is None:
            return torch.empty(len(x), 0)
        logits = self.features(x) @ self.aligned_w.T + self.aligned_b
        return self.classes.mask(logits, task_id)

    # ---- accounting and checkpoints -----------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(representation + head parameters, same): everything here is trained at some point."""
        if self.representation is None:
            return 0, 0
        n = sum(p.numel() for p in self.representation.parameters()) + self.head_w.numel() + self.head_b.numel()
        return n, n

    def state_dict(self) -> dict:
        """Representation, both heads, class statistics, experience classes, RNG and counters."""
        if self.num_classes is None:
            return {"built": False}
        state = {
            "built": True,
            "num_classes": self.num_classes,
            "classes": self.classes.state(),
            "gaussians": self.gaussians.state(),
            "experience_classes": [list(c) for c in self.experience_classes],
            "generator": self.generator.get_state(),
            "samples_seen": self.samples_seen,
        }
        if self.representation is not None:
            state.update(
                dim=self.dim,
                representation=dict(self.representation.state_dict()),
                head_w=self.head_w,
                head_b=self.head_b,
                aligned_w=self.aligned_w,
                aligned_b=self.aligned_b,
            )
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            fresh = SLCA(self.config, self.seed)
            fresh.encoder = self.encoder
            fresh.prepare(None, int(state["num_classes"]))
            fresh.classes.load(state["classes"])
            fresh.gaussians.load(state["gaussians"])
            fresh.experience_classes = [[int(c) for c in cls] for cls in state["experience_classes"]]
            fresh.generator.set_state(state["generator"])
            fresh.samples_seen = int(state["samples_seen"])
            if "representation" in state:
                fresh._build(int(state["dim"]))
                fresh.representation.load_state_dict(state["representation"], strict=True)
                for p in fresh.representation.parameters():
                    p.requires_grad_(False)
                fresh.representation.eval()
                for key in ("head_w", "head_b", "aligned_w", "aligned_b"):
                    value = state[key].float()
                    if value.shape != getattr(fresh, key).shape:
                        expected = tuple(getattr(fresh, key).shape)
                        raise ValueError(f"{key} has shape {tuple(value.shape)}, expected {expected}")
                    setattr(fresh, key, value.clone())
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"checkpoint does not match slca with this config: {e}") from e
        self.__dict__.update(fresh.__dict__)
