"""SLCA: slow learner, per-experience heads and classifier alignment on Gaussian pseudo-features.

SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model (arXiv 2303.05118).
Sequential fine-tuning of the pre-trained text encoder itself, whose weights learn at 1/100 of the head's
learning rate, one linear head per experience (earlier heads frozen, loss over the current classes) and,
from the second experience on, the heads re-trained on samples from each class's stored Gaussian with logit
normalisation; the aligned heads predict, the next experience trains from the stage-1 heads (official
``fc.backup()`` / ``fc.recall()``). With ``backbone_lr_scale=1`` and ``ca=False`` the learner is the paper's
Seq FT baseline. Reads token ids (``data.representation=tokens``).

Notes: docs/papers/slca.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.encoders.text_backbone import EncodeMemo, TextBackbone, check_token_ids, encode_tokens, length_batches
from lifelong.errors import CheckpointError, ConfigError, NonFiniteLossError
from lifelong.heads.prototype import ClassGaussians
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register
from lifelong.runtime import progress

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class SLCAConfig(MethodConfig):
    """SLCA settings; defaults from ``exps/slca/slca_cifar.json`` and ``models/slca.py`` unless noted."""

    backbone: str = hp("minilm", "pre-trained text encoder: minilm (all-MiniLM-L6-v2) | path of a local HF folder")
    train_layers: int = hp(
        -1, "encoder layers that learn: -1 all (the paper), k the top k (the frozen bottom's outputs are cached)"
    )
    epochs: int = hp(1, "epochs per experience (official 20; 1 here to fit 2 CPU cores)")
    milestones: tuple[int, ...] = hp((), "epochs after which the lr is multiplied by lr_decay (official (18,))")
    lr_decay: float = hp(0.1, "lr factor at each milestone")
    lr: float = hp(0.01, "classifier learning rate (the encoder's is lr * backbone_lr_scale)")
    backbone_lr_scale: float = hp(0.01, "encoder lr = lr * this (bcb_lrscale; 1 = Seq FT, 0 = frozen)")
    batch_size: int = hp(128, "mini-batch size")
    momentum: float = hp(0.9, "SGD momentum")
    weight_decay: float = hp(5e-4, "SGD weight decay")
    ca: bool = hp(True, "classifier alignment after each experience (False: slow learner only)")
    ca_epochs: int = hp(5, "classifier-alignment epochs")
    ca_lr: float = hp(0.01, "classifier-alignment learning rate (official: the same lrate, 0.01 in every config)")
    ca_samples: int = hp(256, "pseudo-features sampled per class per CA epoch (also the CA batch size)")
    ca_logit_norm: float = hp(0.1, "logit-normalisation temperature during CA (0 = plain cross-entropy)")
    ca_mean_shrink: bool = hp(True, "scale old experiences' class means by 0.9 + 0.1 (t+1)/(T+1) (official code)")
    cov_ridge: float = hp(1e-4, "added to the diagonal of each class covariance")
    pad_id: int = hp(0, "padding token id of the token-id inputs")
    encode_batch: int = hp(256, "sentences embedded per batch (no effect on results)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.epochs < 1 or self.batch_size < 1 or self.ca_epochs < 0 or self.ca_samples < 1:
            raise ConfigError(
                "epochs, batch_size, ca_samples must be >= 1 and ca_epochs >= 0; got "
                f"{self.epochs}, {self.batch_size}, {self.ca_samples}, {self.ca_epochs}"
            )
        if (
            not self.lr > 0
            or not self.ca_lr > 0
            or self.backbone_lr_scale < 0
            or self.ca_logit_norm < 0
            or self.cov_ridge < 0
        ):
            raise ConfigError(
                "lr, ca_lr must be > 0 and backbone_lr_scale, ca_logit_norm, cov_ridge >= 0; got "
                f"{self.lr}, {self.backbone_lr_scale}, {self.ca_logit_norm}, {self.cov_ridge}"
            )
        if self.train_layers < -1 or self.encode_batch < 1:
            raise ConfigError(
                f"train_layers must be -1 (all) or >= 0 and encode_batch >= 1, got {self.train_layers}, "
                f"{self.encode_batch}"
            )


@register("slca")
class SLCA(LearnerBase):
    """Slow learner + per-experience heads + classifier alignment on Gaussian pseudo-features (SLCA, arXiv 2303.05118).

    Args:
        config: :class:`SLCAConfig`.
        seed: seeds the heads' initialisation, the batch order and CA sampling.
    """

    config_class = SLCAConfig
    #: token ids through the pre-trained text encoder
    inputs = {"tokens": ""}

    def __init__(self, config: SLCAConfig, seed: int = 0):
        super().__init__(config, seed)
        self.generator = torch.Generator().manual_seed(seed)
        # alignment draws from its own generator, so SL+CA and SeqFT runs get the same batches and inits
        self.ca_generator = torch.Generator().manual_seed(seed + 1)
        self._version = 0  # bumped whenever the encoder may change (keys the feature memo)
        self.num_classes: int | None = None
        self.dim: int | None = None
        self.representation: TextBackbone | None = None  # the encoder that learns slowly
        self.head_w: torch.Tensor | None = None  # (C, d) stage-1 heads (what the next experience trains on)
        self.head_b: torch.Tensor | None = None
        self.aligned_w: torch.Tensor | None = None  # (C, d) heads after classifier alignment (used to predict)
        self.aligned_b: torch.Tensor | None = None
        self.gaussians: ClassGaussians | None = None
        self.experience_classes: list[list[int]] = []  # classes of each learned experience, in order
        self.last_param_groups: list[dict] = []  # lr per parameter group of the last stage-1 optimizer
        self._memo = EncodeMemo(size=64)

    # ---- modules ------------------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Load the encoder and allocate per-class state for ``num_classes`` classes."""
        self.num_classes = int(num_classes)
        self.classes.prepare(num_classes)
        self.gaussians = ClassGaussians(num_classes, self.config.cov_ridge)
        # features = mean-pooled last hidden states, not unit-normalised (the CLS-after-final-norm analogue)
        self.representation = TextBackbone(
            self.config.backbone, pad_id=self.config.pad_id, normalize=False, dropout=False
        ).eval()
        for p in self.representation.parameters():
            p.requires_grad_(False)
        self.dim = self.representation.out_dim
        self.head_w = torch.zeros(self.num_classes, self.dim)
        self.head_b = torch.zeros(self.num_classes)
        self.aligned_w, self.aligned_b = self.head_w.clone(), self.head_b.clone()

    @property
    def _first_trained(self) -> int:
        """Index of the first encoder layer that learns."""
        n = self.representation.num_layers
        return 0 if self.config.train_layers < 0 else n - min(self.config.train_layers, n)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's pooled features of token ids ``x`` (encoded once per encoder state)."""
        check_token_ids(x, self.representation.encoder.config.vocab_size, self.name)
        self.representation.eval()
        fn = lambda t: encode_tokens(self.representation, t, self.config.encode_batch, self.config.pad_id)  # noqa: E731
        return self._memo(f"encoder-{self._version}", x, fn)

    # ---- learning -----------------------------------------------------------------------------
    def learn(self, experience: Experience) -> None:
        """Slow-learner training on the experience, class statistics, then classifier alignment."""
        if self.num_classes is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        check_token_ids(
            x, self.representation.encoder.config.vocab_size, self.name, f"dataset {experience.dataset.name!r}"
        )
        self.classes.observe(experience, y)
        current = torch.unique(y)
        self._init_heads(current)
        self._stage1(x, y, current, experience)
        self.experience_classes.append(current.tolist())
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

    def _trained_modules(self) -> list[nn.Module]:
        enc = self.representation.encoder
        if self.config.train_layers < 0:
            return [enc]
        return list(enc.encoder.layer)[self._first_trained :]

    def stage1_param_groups(self, w: nn.Parameter, b: nn.Parameter) -> list[dict]:
        """SGD groups: encoder at ``lr * backbone_lr_scale``, head at ``lr`` (official ``_stage1_training``)."""
        c = self.config
        groups = []
        rep = [p for m in self._trained_modules() for p in m.parameters()]
        if rep and c.backbone_lr_scale > 0:
            groups.append({"params": rep, "lr": c.lr * c.backbone_lr_scale, "name": "representation"})
        groups.append({"params": [w, b], "lr": c.lr, "name": "head"})
        return groups

    def _stage1(self, x: torch.Tensor, y: torch.Tensor, current: torch.Tensor, experience: Experience) -> None:
        """Train the encoder (slowly) and the current experience's head; online streams get one ordered pass."""
        c = self.config
        index = experience.index
        epochs = 1 if experience.online else c.epochs
        bs = experience.batch_size if experience.online and experience.batch_size else c.batch_size
        w = nn.Parameter(self.head_w[current].clone())
        b = nn.Parameter(self.head_b[current].clone())
        groups = self.stage1_param_groups(w, b)
        trains_rep = any(grp["name"] == "representation" for grp in groups)
        for m in self._trained_modules():
            for p in m.parameters():
                p.requires_grad_(trains_rep)
        optimizer = torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        self.last_param_groups = [{"name": grp["name"], "lr": grp["lr"]} for grp in optimizer.param_groups]
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(c.milestones), gamma=c.lr_decay)
        target = torch.searchsorted(current, y)
        rep = self.representation
        self._version += 1
        start = self._first_trained
        cached = rep.bottom(x, start) if start > 0 else None  # the frozen tower, run once
        rep.train()
        n = len(y)
        if experience.online:
            batches = [[torch.arange(n)[s : s + bs] for s in range(0, n, bs)]]
        else:
            batches = [length_batches(x, bs, c.pad_id, self.generator) for _ in range(epochs)]
        dropout_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with (
            torch.random.fork_rng(devices=[]),
            progress(total=sum(len(e) for e in batches), desc=f"slca: experience {index}", unit="step") as bar,
        ):
            torch.manual_seed(dropout_seed)  # the encoder's dropout draws from the learner's seed
            for epoch_batches in batches:
                for idx in epoch_batches:
                    z = rep(x[idx]) if cached is None else rep.top(cached[0][idx], cached[1][idx], start)
                    loss = F.cross_entropy(z @ w.T + b, target[idx])
                    if not torch.isfinite(loss):
                        raise NonFiniteLossError(
                            f"slca: the loss became {loss.item()} during experience {index}; "
                            "lower method.lr or check the inputs"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    bar.update(1)
                schedule.step()
        self.samples_seen += epochs * n
        rep.eval()
        for p in rep.parameters():
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
        optimizer = torch.optim.SGD([w, b], lr=c.ca_lr, momentum=c.momentum, weight_decay=c.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.ca_epochs)
        for _ in range(c.ca_epochs):
            xs, ys = self.gaussians.sample(c.ca_samples, self.ca_generator, scale)
            order = torch.randperm(len(ys), generator=self.ca_generator)
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
        """Aligned-head logits over the classes seen so far (the stage-1 heads' when ``ca=False``)."""
        return self.logits(x, task_id, aligned=True)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, task_id: int | None = None, aligned: bool = True) -> torch.Tensor:
        """Logits of the aligned heads, or of the stage-1 heads (``aligned=False``: the slow learner alone)."""
        if self.representation is None or not self.experience_classes:
            return torch.empty(len(x), 0)
        w, b = (self.aligned_w, self.aligned_b) if aligned else (self.head_w, self.head_b)
        return self.classes.mask(self.features(x) @ w.T + b, task_id)

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
            "ca_generator": self.ca_generator.get_state(),
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
            fresh.prepare((), int(state["num_classes"]))
            fresh.classes.load(state["classes"])
            fresh.gaussians.load(state["gaussians"])
            fresh.experience_classes = [[int(c) for c in cls] for cls in state["experience_classes"]]
            fresh.generator.set_state(state["generator"])
            fresh.ca_generator.set_state(state["ca_generator"])
            fresh.samples_seen = int(state["samples_seen"])
            if "representation" in state:
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
