"""EASE: an expandable ensemble of adapter subspaces with semantic-guided prototype completion.

Zhou, Sun, Ye & Zhan, "Expandable Subspace Ensemble for Pre-Trained Model-Based Class-Incremental
Learning", CVPR 2024 (arXiv 2403.12030). Each experience trains a new lightweight adapter (earlier ones
frozen) with a cosine classifier over the experience's classes only; the adapter's output is a new feature
subspace. After training, every class of the experience gets its prototype (mean adapted feature) in every
subspace that exists; an old class's prototype in a newer subspace (its data are gone) is synthesised as
the official ``solve_sim_reset`` does: the softmax over the cosine similarities, in the old subspace,
between the old class's prototype and the prototypes of classes present in both subspaces, weighting
those classes' prototypes in the new subspace. Prediction sums the per-subspace cosine scores, the
class's own subspace with weight 1 and the others with ``alpha / (number of experiences - 1)`` (the
official ``forward_reweight``).

Feature-level simplification: the official adapters sit inside the ViT blocks; here each adapter is an
AdaptFormer bottleneck (:func:`lifelong.adapters.feature.feature_adapter`) on the cached feature vector,
``f + s * up(relu(down(f)))``, so the subspaces are re-mappings of one frozen embedding.

Defaults: AdaptFormer bottleneck 16 (the official VTAB config's ``ffn_num``; its other configs use 64) and
scale 0.1, ``alpha = 0.1`` (official), the frozen pre-trained
space not used as a subspace (``include_ptm=False``; ``beta`` weighs it when on); SGD with momentum 0.9,
20 epochs per experience, cosine lr decay and weight decay 5e-4 as the official configs, lr 0.01 (pick it
on validation; the official ViT lr does not transfer to a feature-level adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.adapters.feature import feature_adapter
from lifelong.encoders.frozen import frozen_encoder
from lifelong.errors import CheckpointError, ConfigError
from lifelong.heads.cosine import CosineClassifier
from lifelong.heads.prototype import encode_in_batches
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class EASEConfig(MethodConfig):
    """EASE settings (official: AdaptFormer bottleneck 16 on VTAB / 64 elsewhere, alpha 0.1, SGD + cosine)."""

    adapter: str = hp("adapter", "adapter kind per experience: adapter (AdaptFormer bottleneck) | ssf | linear")
    bottleneck: int = hp(16, "AdaptFormer bottleneck width (official ffn_num: 16 on VTAB, 64 elsewhere)")
    adapter_scale: float = hp(0.1, "AdaptFormer output scale s (official 0.1)")
    alpha: float = hp(0.1, "weight of the other subspaces' scores, divided by (experiences - 1) (official 0.1)")
    include_ptm: bool = hp(False, "also score in the frozen pre-trained space (official use_init_ptm)")
    beta: float = hp(0.1, "weight of the pre-trained space's score when include_ptm")
    epochs: int = hp(20, "epochs per experience")
    batch_size: int = hp(32, "mini-batch size")
    lr: float = hp(0.01, "learning rate (SGD, momentum 0.9, cosine decay to 0 over the experience)")
    weight_decay: float = hp(5e-4, "weight decay (official 5e-4)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.adapter not in ("adapter", "ssf", "linear"):
            raise ConfigError(f"adapter must be adapter, ssf or linear, got {self.adapter!r}")
        if self.bottleneck < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(
                f"bottleneck, epochs and batch_size must be >= 1, got {self.bottleneck}, {self.epochs}, "
                f"{self.batch_size}"
            )
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if self.alpha < 0 or self.beta < 0:
            raise ConfigError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")


def complete_prototypes(
    protos: list[torch.Tensor], task_of: torch.Tensor, classes_of: list[list[int]]
) -> list[torch.Tensor]:
    """Fill the prototypes of classes in subspaces newer than their task (official ``solve_sim_reset``).

    ``protos[j]`` (C, d) holds real prototypes in subspace ``j`` for the classes of tasks ``>= j``;
    ``task_of`` (C,) the task of each seen class; ``classes_of[t]`` the classes of task ``t``. For each
    old task ``t`` and newer subspace ``j``, the classes of tasks ``>= j`` (present in both ``t`` and ``j``)
    are the bridge: ``P_j[old] = softmax(cos(P_t[old], P_t[bridge])) @ P_j[bridge]``.
    """
    out = [p.clone() for p in protos]
    last = len(protos) - 1
    for t in range(last):
        old = torch.tensor(classes_of[t])
        for j in range(t + 1, last + 1):
            bridge = torch.tensor([c for k in range(j, last + 1) for c in classes_of[k]])
            a = F.normalize(protos[t][bridge], dim=1)
            a_hat = F.normalize(protos[t][old], dim=1)
            sim = torch.softmax(a_hat @ a.T, dim=1)
            out[j][old] = sim @ protos[j][bridge]
    return out


@register("ease")
class EASE(LearnerBase):
    """One adapter per experience over frozen features; ensemble of subspace prototype scores.

    Args:
        config: :class:`EASEConfig`.
        seed: seeds the adapters' initialisation and the batch order.
        encoder: frozen feature function; default the identity over flattened inputs.
    """

    config_class = EASEConfig

    def __init__(self, config: EASEConfig, seed: int = 0, encoder: Callable | nn.Module | None = None):
        super().__init__(config, seed)
        self.encoder = frozen_encoder(encoder)
        self.generator = torch.Generator().manual_seed(seed)
        self.adapters = nn.ModuleList()
        self.dim: int | None = None
        self.num_classes: int | None = None
        self.real: list[torch.Tensor] = []  # per subspace (C, d): real prototypes (zeros where not computed)
        self.ptm_protos: torch.Tensor | None = None  # (C, d) prototypes of the frozen features
        self.task_of: torch.Tensor | None = None  # (C,) task index of each class, -1 unseen
        self.classes_of: list[list[int]] = []
        self.protos: list[torch.Tensor] = []  # completed prototypes per subspace

    # ---- construction ------------------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Record the feature dimension of the encoder's outputs and the number of classes."""
        self.dim = int(encode_in_batches(self.encoder, torch.zeros(1, *input_shape), 1).shape[1])
        self.num_classes = int(num_classes)
        self.classes.prepare(num_classes)
        self.task_of = torch.full((num_classes,), -1, dtype=torch.long)
        self.ptm_protos = torch.zeros(num_classes, self.dim)

    def _new_adapter(self, index: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + index)
            return feature_adapter(self.config.adapter, self.dim, self.config.bottleneck, self.config.adapter_scale)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen embeddings (n, d)."""
        return encode_in_batches(self.encoder, x, 1024).float()

    # ---- learning ------------------------------------------------------------------------------------------
    def learn(self, experience: Experience) -> None:
        """Train a new adapter on the experience, add its classes' prototypes, complete the old ones."""
        if self.task_of is None:
            self.prepare(tuple(experience.input_shape), experience.num_classes)
        x, y = experience.train_tensors()
        self.classes.observe(experience, y)
        f = self.features(x)
        t = len(self.adapters)
        new = sorted(int(c) for c in y.unique())
        self.classes_of.append(new)
        self.task_of[new] = t
        adapter = self._new_adapter(t)
        self._train_adapter(adapter, f, y, new)
        adapter.eval()
        for p in adapter.parameters():
            p.requires_grad_(False)
        self.adapters.append(adapter)
        self.real.append(torch.zeros(self.num_classes, self.dim))
        idx = torch.tensor(new)
        counts = torch.zeros(self.num_classes).index_add_(0, y, torch.ones(len(y)))[idx].unsqueeze(1)
        with torch.no_grad():
            for j, a in enumerate(self.adapters):
                sums = torch.zeros(self.num_classes, self.dim).index_add_(0, y, a(f))
                self.real[j][idx] = sums[idx] / counts
            sums = torch.zeros(self.num_classes, self.dim).index_add_(0, y, f)
            self.ptm_protos[idx] = sums[idx] / counts
        self.protos = complete_prototypes(self.real, self.task_of, self.classes_of)
        self.samples_seen += len(y) * self.config.epochs

    def _train_adapter(self, adapter: nn.Module, f: torch.Tensor, y: torch.Tensor, new: list[int]) -> None:
        """Cross-entropy of a cosine classifier over the experience's classes on the adapter's output."""
        c = self.config
        local = torch.full((self.num_classes,), -1, dtype=torch.long)
        local[torch.tensor(new)] = torch.arange(len(new))
        target = local[y]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + 500 + len(self.adapters))
            head = CosineClassifier(self.dim, len(new))
        params = [*adapter.parameters(), *head.parameters()]
        opt = torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        n, bs = len(y), c.batch_size
        steps = c.epochs * math.ceil(n / bs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        adapter.train()
        for _ in range(c.epochs):
            order = torch.randperm(n, generator=self.generator)
            for s in range(0, n, bs):
                idx = order[s : s + bs]
                loss = F.cross_entropy(head(adapter(f[idx])), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()

    # ---- prediction -------------------------------------------------------------------------------------
    def subspace_weights(self) -> torch.Tensor:
        """(subspaces, C): 1 for a class's own subspace, ``alpha / (T - 1)`` for the others (official)."""
        t = len(self.adapters)
        w = torch.full((t, self.num_classes), self.config.alpha / max(t - 1, 1))
        seen = self.task_of >= 0
        w[self.task_of[seen], torch.nonzero(seen).flatten()] = 1.0
        return w

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Weighted sum over subspaces of the cosine between the adapted input and each class's prototype."""
        if not self.adapters:
            return torch.empty(len(x), 0)
        f = self.features(x)
        w = self.subspace_weights()
        scores = torch.zeros(len(x), self.num_classes)
        for j, a in enumerate(self.adapters):
            s = F.normalize(a(f), dim=1) @ F.normalize(self.protos[j], dim=1).T
            scores += s * w[j]
        if self.config.include_ptm:
            scores += self.config.beta * (F.normalize(f, dim=1) @ F.normalize(self.ptm_protos, dim=1).T)
        return self.classes.mask(scores, task_id)

    # ---- accounting and checkpoints ---------------------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(parameters of the newest adapter, all adapters' parameters)."""
        if not self.adapters:
            return 0, 0
        return sum(p.numel() for p in self.adapters[-1].parameters()), sum(
            p.numel() for p in self.adapters.parameters()
        )

    def state_dict(self) -> dict:
        """Adapters, real prototypes, task of each class, the generator and seen classes."""
        if self.task_of is None:
            return {"built": False}
        return {
            "built": True,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "adapters": [{k: v.clone() for k, v in a.state_dict().items()} for a in self.adapters],
            "real": [r.clone() for r in self.real],
            "ptm_protos": self.ptm_protos.clone(),
            "task_of": self.task_of.clone(),
            "classes_of": [list(c) for c in self.classes_of],
            "generator": self.generator.get_state(),
            **self.base_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            fresh = type(self)(self.config, self.seed, self.encoder)
            fresh.dim, fresh.num_classes = int(state["dim"]), int(state["num_classes"])
            for i, sd in enumerate(state["adapters"]):
                a = fresh._new_adapter(i)
                a.load_state_dict(sd, strict=True)
                a.eval()
                for p in a.parameters():
                    p.requires_grad_(False)
                fresh.adapters.append(a)
            fresh.real = [r.float().clone() for r in state["real"]]
            fresh.ptm_protos = state["ptm_protos"].float().clone()
            fresh.task_of = state["task_of"].long().clone()
            fresh.classes_of = [[int(c) for c in cs] for cs in state["classes_of"]]
            if len(fresh.real) != len(fresh.adapters) or len(fresh.classes_of) != len(fresh.adapters):
                raise ValueError("adapters, prototypes and tasks differ in number")
            fresh.generator.set_state(state["generator"])
            fresh.classes, fresh.samples_seen = self.read_base_state(state)
            fresh.protos = complete_prototypes(fresh.real, fresh.task_of, fresh.classes_of)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint does not match {self.name} with this config: {e}") from e
        self.__dict__.update(fresh.__dict__)
