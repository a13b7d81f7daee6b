"""APER / ADAM: adapt the pre-trained transformer on the first experience, then prototypes on [PTM, adapted].

Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity are All You
Need (arXiv 2303.07338; the journal version calls the method APER). On the first experience only, a
parameter-efficient module inside the pre-trained text encoder (AdaptFormer, SSF, VPT-deep, LoRA) or the
whole encoder (``finetune``) is trained with a cosine classifier over that experience's classes; it is then
frozen, every sentence is embedded as ``[PTM(x), adapted(x)]`` and classified by cosine similarity to
class-mean prototypes, as in SimpleCIL. Reads token ids (``data.representation=tokens``).

Notes: docs/papers/simplecil.md
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.adapters.encoder import (
    ENCODER_ADAPTERS,
    EncoderAdapterConfig,
    add_encoder_adapter,
    encoder_adapter_state,
    load_encoder_adapter_state,
)
from lifelong.encoders.text_backbone import EncodeMemo, TextBackbone, check_token_ids, encode_tokens, length_batches
from lifelong.errors import CheckpointError, ConfigError, NonFiniteLossError
from lifelong.heads.cosine import CosineClassifier
from lifelong.heads.prototype import PrototypeHead
from lifelong.methods.base import LearnerBase
from lifelong.methods.config import MethodConfig, hp
from lifelong.methods.registry import register
from lifelong.optim import build_optimizer
from lifelong.runtime import progress

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


#: adaptation lr of each kind when ``lr = 0``: the best of its grid on CLINC150's validation split with 5 epochs
#: (``lifelong reproduce simplecil --scale full``; docs/papers/simplecil.md). The official 0.01 barely moves
#: the adapters in so few steps.
TUNED_LR = {"adaptformer": 0.5, "ssf": 0.1, "vpt": 0.5, "lora": 0.1, "finetune": 0.01}


@dataclass
class APERConfig(MethodConfig):
    """APER settings; defaults from the official configs (``exps/aper_adapter/*.json``) unless noted."""

    backbone: str = hp("minilm", "pre-trained text encoder: minilm (all-MiniLM-L6-v2) | path of a local HF folder")
    adapter: str = hp(
        "adaptformer",
        "what adapts inside the encoder: adaptformer (parallel bottleneck beside every feed-forward block) | "
        "ssf (scale-shift after every Linear/LayerNorm) | vpt (deep prompts) | lora (query/value) | "
        "finetune (every weight)",
    )
    bottleneck: int = hp(64, "AdaptFormer bottleneck width (ffn_num)")
    adapter_scale: float = hp(0.1, "AdaptFormer output scale (ffn_adapter_scalar)")
    prompts: int = hp(5, "VPT-deep prompt tokens per layer (prompt_token_num)")
    rank: int = hp(8, "LoRA rank when adapter=lora (alpha = 2 rank)")
    epochs: int = hp(5, "adaptation epochs on the first experience (official: 20 adapter/ssf, 5 vpt/finetune)")
    lr: float = hp(
        0.0,
        "adaptation learning rate; 0 = the kind's tuned default (adaptformer 0.5, ssf 0.1, vpt 0.5, lora 0.1, "
        "finetune 0.01)",
    )
    min_lr: float = hp(0.0, "final learning rate of the cosine schedule (min_lr)")
    batch_size: int = hp(48, "adaptation mini-batch size")
    optimizer: str = hp("sgd", "optimizer name: see `lifelong list optimizers`")
    momentum: float = hp(0.9, "momentum (SGD only)")
    weight_decay: float = hp(5e-4, "weight decay of the adapter and the cosine head")
    merge: str = hp("concat", "embedding for the prototypes: concat [PTM, adapted] (APER) | adapted (ablation)")
    pad_id: int = hp(0, "padding token id of the token-id inputs")
    encode_batch: int = hp(256, "sentences embedded per batch (no effect on results)")
    encode_precision: str = hp(
        "fp32", "precision of the frozen and adapted encodes: fp32 | bf16 (autocast, ~2x faster)"
    )

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        if self.adapter not in ENCODER_ADAPTERS:
            raise ConfigError(f"adapter must be one of {ENCODER_ADAPTERS}, got {self.adapter!r}")
        if self.merge not in ("concat", "adapted"):
            raise ConfigError(f"merge must be 'concat' or 'adapted', got {self.merge!r}")
        if self.encode_precision not in ("fp32", "bf16"):
            raise ConfigError(f"encode_precision must be 'fp32' or 'bf16', got {self.encode_precision!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.encode_batch < 1:
            raise ConfigError(
                "epochs must be >= 0 and batch_size, encode_batch >= 1; got "
                f"{self.epochs}, {self.batch_size}, {self.encode_batch}"
            )
        if self.lr < 0 or self.min_lr < 0:
            raise ConfigError(
                f"lr must be > 0 (or 0: the kind's default) and min_lr >= 0, got {self.lr}, {self.min_lr}"
            )
        self.adapter_config().validate()

    @property
    def adaptation_lr(self) -> float:
        """``lr``, or the kind's tuned default (:data:`TUNED_LR`) when ``lr`` is 0."""
        return self.lr if self.lr > 0 else TUNED_LR[self.adapter]

    def adapter_config(self) -> EncoderAdapterConfig:
        """The encoder adapter these settings describe."""
        return EncoderAdapterConfig(
            kind=self.adapter,
            bottleneck=self.bottleneck,
            scale=self.adapter_scale,
            prompts=self.prompts,
            rank=self.rank,
        )


#: frozen pre-trained encoders' outputs, shared by every APER learner of the process (the PTM never changes)
_FROZEN = EncodeMemo(size=256)


@register("aper")
class APER(LearnerBase):
    """Adapt the PTM on the first experience, freeze, then prototypes on [PTM, adapted] (APER, arXiv 2303.07338).

    Args:
        config: :class:`APERConfig`.
        seed: seeds the adapter's initialisation, the cosine head and the mini-batch order.
    """

    config_class = APERConfig
    #: token ids through the pre-trained text encoder
    inputs = {"tokens": ""}

    def __init__(self, config: APERConfig, seed: int = 0):
        super().__init__(config, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.head: PrototypeHead | None = None
        self.ptm: TextBackbone | None = None  # frozen pre-trained encoder
        self.tuned: TextBackbone | None = None  # the adapted copy (frozen after the first experience)
        self.adapted = False
        self.adaptation_losses: list[float] = []
        self.adapter_hash = ""
        self._memo = EncodeMemo()

    # ---- embeddings ------------------------------------------------------------------------
    def _encode(self, model: TextBackbone, key: str, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        fn = lambda t: encode_tokens(model, t, c.encode_batch, c.pad_id, c.encode_precision)  # noqa: E731
        return self._memo(key, x, fn)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of the prototypes: [PTM, adapted] (adapted only with ``merge=adapted``; PTM before adapting)."""
        check_token_ids(x, self.ptm.encoder.config.vocab_size, self.name)
        if self.tuned is None or not self.adapted:
            return self._frozen(x)
        a = self._encode(self.tuned, f"adapted-{self.adapter_hash}", x)
        if self.config.merge == "adapted":
            return a
        return torch.cat([self._frozen(x), a], dim=1)

    def _frozen(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        fn = lambda t: encode_tokens(self.ptm, t, c.encode_batch, c.pad_id, c.encode_precision)  # noqa: E731
        return _FROZEN(f"ptm-{self.ptm.path}-{c.pad_id}-{c.encode_precision}", x, fn)

    # ---- learning --------------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Load the frozen encoder and allocate the prototypes of ``num_classes`` classes."""
        self.classes.prepare(num_classes)
        self.head = PrototypeHead(num_classes)
        self.ptm = TextBackbone(self.config.backbone, pad_id=self.config.pad_id, dropout=False).eval()
        for p in self.ptm.parameters():
            p.requires_grad_(False)

    def _new_tuned(self) -> tuple[TextBackbone, list]:
        tuned = TextBackbone(self.config.backbone, pad_id=self.config.pad_id, dropout=False)
        params = add_encoder_adapter(tuned, self.config.adapter_config(), generator=self.generator)
        return tuned, params

    def learn(self, experience: Experience) -> None:
        """Adapt on the first experience (only), then add the experience's prototypes."""
        if self.head is None:
            self.prepare(experience.input_shape, experience.num_classes)
        x, y = experience.train_tensors()
        check_token_ids(x, self.ptm.encoder.config.vocab_size, self.name, f"dataset {experience.dataset.name!r}")
        self.classes.observe(experience, y)
        if not self.adapted:
            self._adapt(x, y, experience)
        self.head.update(self.features(x), y)
        self.samples_seen += len(y)

    def _adapt(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Train the adapter + a cosine head over this experience's classes with cross-entropy, then freeze."""
        c = self.config
        epochs = 1 if experience.online and c.epochs > 0 else c.epochs
        bs = experience.batch_size if experience.online and experience.batch_size else c.batch_size
        tuned, params = self._new_tuned()
        present = torch.unique(y)
        target = torch.searchsorted(present, y)  # positions among this experience's classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            head = CosineClassifier(tuned.out_dim, len(present))
        params = [*params, *head.parameters()]
        optimizer = build_optimizer(
            c.optimizer, params, lr=c.adaptation_lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=c.min_lr)
        tuned.train()
        n = len(y)
        batches = [length_batches(x, bs, c.pad_id, self.generator) for _ in range(epochs)]
        dropout_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with (
            torch.random.fork_rng(devices=[]),
            progress(total=sum(len(b) for b in batches), desc=f"aper: adapting ({c.adapter})", unit="step") as bar,
        ):
            torch.manual_seed(dropout_seed)  # the encoder's dropout draws from the learner's seed
            for epoch in range(epochs):
                total = 0.0
                for idx in batches[epoch]:
                    loss = F.cross_entropy(head(tuned(x[idx])), target[idx])
                    if not torch.isfinite(loss):
                        raise NonFiniteLossError(
                            f"aper: the adaptation loss became {loss.item()} on experience {experience.index}; "
                            "lower method.lr or check the inputs"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                    bar.update(1)
                schedule.step()
                self.adaptation_losses.append(total / n)
        self.samples_seen += epochs * n
        self._freeze(tuned)

    def _freeze(self, tuned: TextBackbone) -> None:
        for p in tuned.parameters():
            p.requires_grad_(False)
        self.tuned = tuned.eval()
        h = hashlib.sha1()
        for k, v in sorted(encoder_adapter_state(tuned).items()):
            h.update(k.encode() + v.float().contiguous().numpy().tobytes())
        self.adapter_hash = h.hexdigest()[:16]
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
        """(adapted parameters, those + stored prototype entries)."""
        a = 0 if self.tuned is None else sum(v.numel() for v in encoder_adapter_state(self.tuned).values())
        protos = 0 if self.head is None or self.head.sums is None else self.head.sums.numel()
        return a, a + protos

    def state_dict(self) -> dict:
        """Adapter tensors (every weight for ``finetune``), prototypes, seen classes, RNG and counters."""
        if self.head is None:
            return {"built": False}
        state = {
            "built": True,
            "head": self.head.state(),
            **self.base_state(),
            "generator": self.generator.get_state(),
            "adapted": self.adapted,
            "adaptation_losses": list(self.adaptation_losses),
        }
        if self.tuned is not None:
            state["adapter"] = encoder_adapter_state(self.tuned)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a mismatch raises :class:`CheckpointError` and changes nothing."""
        if not state.get("built", False):
            return
        try:
            head = PrototypeHead(len(state["head"]["counts"]))
            head.load(state["head"])
            tracker, samples = self.read_base_state(state)
            generator = torch.Generator()
            generator.set_state(state["generator"])
            adapted = bool(state["adapted"])
            losses = [float(v) for v in state.get("adaptation_losses", [])]
            if self.ptm is None:
                self.prepare((), len(state["head"]["counts"]))
            tuned = None
            if "adapter" in state:
                tuned, _ = self._new_tuned()
                load_encoder_adapter_state(tuned, state["adapter"])
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, ConfigError) as e:
            raise CheckpointError(f"checkpoint does not match aper with this config: {e}") from e
        self.head, self.classes, self.generator = head, tracker, generator
        self.samples_seen, self.adaptation_losses = samples, losses
        self._memo.clear()
        if tuned is not None:
            self._freeze(tuned)
        self.adapted = adapted
