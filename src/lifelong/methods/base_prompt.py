"""Shared base of the prompting methods (L2P, DualPrompt, CODA-Prompt) inside a frozen pre-trained text encoder.

:class:`PromptLearner` holds the frozen :class:`~lifelong.encoders.text_backbone.TextBackbone`, a linear head
over all classes and a prompt module (:mod:`lifelong.adapters.prompts`) built by the subclass. Each experience
trains the prompt parameters and the head with Adam on cross-entropy over the experience's own classes
(the other classes' logits masked, the official ``train_mask``) plus the method's auxiliary loss, gradients
clipped. The query of every input (the frozen encoder's pooled feature) is computed once, without prompts,
and cached. Reads token ids (``data.representation=tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.encoders.text_backbone import EncodeMemo, TextBackbone, check_token_ids, encode_tokens, length_batches
from lifelong.errors import CheckpointError, ConfigError, NonFiniteLossError
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.runtime import progress

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class PromptConfig(MethodConfig):
    """Settings shared by the prompting methods (subclasses set the paper's defaults)."""

    backbone: str = hp("minilm", "pre-trained text encoder: minilm (all-MiniLM-L6-v2) | path of a local HF folder")
    epochs: int = hp(5, "epochs per experience")
    batch_size: int = hp(16, "mini-batch size")
    lr: float = hp(0.03, "Adam learning rate of the prompts, keys and head")
    weight_decay: float = hp(0.0, "Adam weight decay")
    schedule: str = hp("constant", "learning-rate schedule over each experience's epochs: constant | cosine")
    clip_grad: float = hp(1.0, "clip the gradient norm to this (0: no clipping)")
    pad_id: int = hp(0, "padding token id of the token-id inputs")
    encode_batch: int = hp(256, "sentences embedded per batch at inference (no effect on results)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.epochs < 1 or self.batch_size < 1 or self.encode_batch < 1:
            raise ConfigError(
                f"epochs, batch_size and encode_batch must be >= 1, got {self.epochs}, {self.batch_size}, "
                f"{self.encode_batch}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or self.clip_grad < 0:
            raise ConfigError(
                f"lr must be > 0 and weight_decay, clip_grad >= 0; got {self.lr}, {self.weight_decay}, {self.clip_grad}"
            )
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")


#: frozen encoders' pooled features (the queries), shared by every prompting learner of the process
_QUERIES = EncodeMemo(size=256)


def layers_fit(layers: tuple[int, ...], count: int, what: str) -> None:
    """Raise :class:`ConfigError` unless every index of ``layers`` is a layer of a ``count``-layer encoder."""
    bad = [i for i in layers if not 0 <= i < count]
    if bad:
        raise ConfigError(f"{what} {bad} do not exist: the encoder has {count} layers (0..{count - 1})")


class PromptLearner(LearnerBase):
    """Frozen text encoder + prompts + linear head; subclasses build the prompt module and its forward.

    Subclasses implement :meth:`build_prompt`, :meth:`begin_task` (the parameters that train), :meth:`end_task`
    and :meth:`features` (pooled features and auxiliary loss for token ids and their queries).
    """

    config_class = PromptConfig
    #: token ids through the pre-trained text encoder
    inputs = {"tokens": ""}

    def __init__(self, config: PromptConfig, seed: int = 0):
        super().__init__(config, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.num_classes: int | None = None
        self.backbone: TextBackbone | None = None
        self.head: nn.Linear | None = None
        self.prompt: nn.Module | None = None
        self.experience_classes: list[list[int]] = []
        self.losses: list[float] = []  # mean training loss of each epoch
        self._version = 0  # bumped whenever the prompts or head change (keys the feature memo)
        self._memo = EncodeMemo(size=64)

    # ---- subclass hooks -----------------------------------------------------------------------
    def build_prompt(self, dim: int, layers: int) -> nn.Module:
        """The prompt module for an encoder of width ``dim`` with ``layers`` layers (draw from self.generator)."""
        raise NotImplementedError

    def begin_task(self, task: int) -> list[nn.Parameter]:
        """Prepare the prompt module for task ``task``; return its parameters that train."""
        raise NotImplementedError

    def end_task(self) -> None:
        """Called after the task's training (freeze what the method freezes)."""

    def features(self, x: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features (n, d) of token ids ``x`` with prompts picked by ``query``, auxiliary loss)."""
        raise NotImplementedError

    # ---- modules ------------------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Load the frozen encoder, build the prompt module and a head over ``num_classes`` classes."""
        self.num_classes = int(num_classes)
        self.classes.prepare(num_classes)
        # features = mean-pooled last hidden states, not unit-normalised (the CLS-after-final-norm analogue)
        self.backbone = TextBackbone(self.config.backbone, pad_id=self.config.pad_id, normalize=False, dropout=False)
        self.backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        dim = self.backbone.out_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.head = nn.Linear(dim, self.num_classes)
        self.prompt = self.build_prompt(dim, self.backbone.num_layers)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's pooled features of ``x`` without prompts (computed once per input)."""
        c = self.config
        fn = lambda t: encode_tokens(self.backbone, t, c.encode_batch, c.pad_id)  # noqa: E731
        return _QUERIES(f"query-{self.backbone.path}-{c.pad_id}", x, fn)

    # ---- learning -----------------------------------------------------------------------------
    def learn(self, experience: Experience) -> None:
        """Train the prompts and head on the experience (its classes' logits only)."""
        if self.num_classes is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        check_token_ids(x, self.backbone.encoder.config.vocab_size, self.name, f"dataset {experience.dataset.name!r}")
        self.classes.observe(experience, y)
        current = torch.unique(y)
        task = len(self.experience_classes)
        c = self.config
        epochs = 1 if experience.online else c.epochs
        bs = experience.batch_size if experience.online and experience.batch_size else c.batch_size
        q_all = self.queries(x)
        params = [*self.begin_task(task), *self.head.parameters()]
        optimizer = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs) if c.schedule == "cosine" else None
        )
        allowed = torch.zeros(self.num_classes, dtype=torch.bool)
        allowed[current] = True
        n = len(y)
        if experience.online:
            batches = [[torch.arange(n)[s : s + bs] for s in range(0, n, bs)]]
        else:
            batches = [length_batches(x, bs, c.pad_id, self.generator) for _ in range(epochs)]
        self._version += 1
        with progress(total=sum(len(b) for b in batches), desc=f"{self.name}: experience {experience.index}") as bar:
            for epoch_batches in batches:
                total = 0.0
                for idx in epoch_batches:
                    feats, aux = self.features(x[idx], q_all[idx])
                    logits = self.head(feats).masked_fill(~allowed, float("-inf"))
                    loss = F.cross_entropy(logits, y[idx]) + aux
                    if not torch.isfinite(loss):
                        raise NonFiniteLossError(
                            f"{self.name}: the loss became {loss.item()} during experience {experience.index}; "
                            "lower method.lr or check the inputs"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if c.clip_grad > 0:
                        torch.nn.utils.clip_grad_norm_(params, c.clip_grad)
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                    bar.update(1)
                if schedule is not None:
                    schedule.step()
                self.losses.append(total / n)
        self.end_task()
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.experience_classes.append(current.tolist())
        self.samples_seen += epochs * n
        self._memo.clear()

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Prompted pooled features of ``x`` (length-sorted batches, rows in input order)."""
        check_token_ids(x, self.backbone.encoder.config.vocab_size, self.name)
        q_all = self.queries(x)

        def run(t: torch.Tensor) -> torch.Tensor:
            out = torch.empty(len(t), self.backbone.out_dim)
            for idx in length_batches(t, self.config.encode_batch, self.config.pad_id):
                out[idx] = self.features(t[idx], q_all[idx])[0].float()
            return out

        return self._memo(f"features-{self._version}", x, run)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Head logits over the classes seen so far."""
        if self.num_classes is None or not self.experience_classes:
            return torch.empty(len(x), 0)
        return self.classes.mask(self.head(self.embed(x)), task_id)

    # ---- accounting and checkpoints -----------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(prompt + head tensors, those + the frozen encoder)."""
        if self.prompt is None:
            return 0, 0
        own = sum(v.numel() for v in self.prompt.state_dict().values()) + sum(p.numel() for p in self.head.parameters())
        return own, own + sum(p.numel() for p in self.backbone.parameters())

    def state_dict(self) -> dict:
        """Prompt tensors, head, seen classes, experience classes, RNG and counters."""
        if self.num_classes is None:
            return {"built": False}
        return {
            "built": True,
            "num_classes": self.num_classes,
            **self.base_state(),
            "prompt": {k: v.detach().clone() for k, v in self.prompt.state_dict().items()},
            "head": {k: v.detach().clone() for k, v in self.head.state_dict().items()},
            "experience_classes": [list(c) for c in self.experience_classes],
            "losses": list(self.losses),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            fresh = type(self)(self.config, self.seed)
            fresh.prepare((), int(state["num_classes"]))
            fresh.prompt.load_state_dict(state["prompt"], strict=True)
            fresh.head.load_state_dict(state["head"], strict=True)
            fresh.classes, fresh.samples_seen = self.read_base_state(state)
            fresh.experience_classes = [[int(c) for c in cls] for cls in state["experience_classes"]]
            fresh.losses = [float(v) for v in state["losses"]]
            fresh.generator.set_state(state["generator"])
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"checkpoint does not match {self.name} with this config: {e}") from e
        fresh._version = self._version + 1
        self.__dict__.update(fresh.__dict__)
