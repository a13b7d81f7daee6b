"""Adapters inside a pre-trained transformer encoder: AdaptFormer, SSF, VPT-deep, full / top-layer fine-tuning.

Each kind is put into the stock ``transformers`` modules of a BERT-style encoder (``model.embeddings``,
``model.encoder.layer[i]`` with ``attention``/``intermediate``/``output``, as all-MiniLM-L6-v2) by wrapping
modules, never by forking the model's code. :func:`add_encoder_adapter` freezes the pre-trained weights,
inserts the kind's parameters and returns them (the parameters to train). ``lora`` uses
:func:`lifelong.adapters.inject_adapter`. :func:`encoder_adapter_state` is what to save (a flat dict of
tensors, safetensors-ready).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lifelong.errors import ConfigError

ENCODER_ADAPTERS = ("adaptformer", "ssf", "vpt", "finetune", "lora")


@dataclass(frozen=True)
class EncoderAdapterConfig:
    """Which adapter kind goes into the encoder, and its size.

    Args:
        kind: ``adaptformer`` (parallel bottleneck beside every feed-forward block, Chen et al. 2022,
            arXiv 2205.13535), ``ssf`` (scale and shift after every Linear and LayerNorm, Lian et al. 2022,
            arXiv 2210.08823), ``vpt`` (deep visual prompt tuning: ``prompts`` learned tokens at the input of
            every layer, Jia et al. 2022, arXiv 2203.12119), ``finetune`` (the top ``top_layers`` layers, or
            all weights when ``top_layers`` is None) or ``lora`` (rank ``rank`` on query and value).
        bottleneck: AdaptFormer's bottleneck width.
        scale: AdaptFormer's output scale (``ffn_adapter_scalar``).
        prompts: VPT prompt tokens per layer.
        top_layers: ``finetune``: train only the top ``top_layers`` transformer layers (None: everything).
        rank: ``lora`` rank (alpha = 2 * rank).
    """

    kind: str = "adaptformer"
    bottleneck: int = 64
    scale: float = 0.1
    prompts: int = 5
    top_layers: int | None = None
    rank: int = 8

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an unknown kind or a size out of range."""
        if self.kind not in ENCODER_ADAPTERS:
            raise ConfigError(f"encoder adapter must be one of {ENCODER_ADAPTERS}, got {self.kind!r}")
        if self.bottleneck < 1 or self.prompts < 1 or self.rank < 1:
            raise ConfigError(
                f"bottleneck, prompts and rank must be >= 1, got {self.bottleneck}, {self.prompts}, {self.rank}"
            )
        if self.top_layers is not None and self.top_layers < 0:
            raise ConfigError(f"top_layers must be >= 0 or None (all), got {self.top_layers}")


def _layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT-style model, or one clear error."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not all(
        hasattr(layer, "output") and hasattr(layer, "intermediate") for layer in layers
    ):
        raise ConfigError(
            f"encoder adapters need a BERT-style model (encoder.layer[i] with intermediate/output), got "
            f"{type(model).__name__}; use adapter=lora for other architectures"
        )
    return layers


# ---- AdaptFormer ------------------------------------------------------------------------------------
class ParallelAdapter(nn.Module):
    """AdaptFormer's bottleneck ``scale * up(dropout(relu(down(x))))`` (no residual: it runs beside the FFN).

    Initialised as AdaptFormer's ``lora`` option: ``down`` Kaiming-uniform, ``up`` and both
    biases zero, so the adapted model starts as the pre-trained one. Dropout 0.1 as the
    official APER code (active in training only).
    """

    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = float(scale)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(torch.relu(self.down(x)))) * self.scale


class AdaptFormerOutput(nn.Module):
    """A BERT ``output`` block with AdaptFormer's adapter beside the feed-forward network.

    BERT's block computes ``LayerNorm(ffn(a) + a)`` for the attention output ``a``; with the
    adapter it is ``LayerNorm(ffn(a) + a + adapter(a))``: the adapter reads the feed-forward
    block's input and its output joins the residual sum, as AdaptFormer's ``parallel`` option
    (in a post-LayerNorm block the sum is normalised after).
    """

    def __init__(self, output: nn.Module, adapter: ParallelAdapter):
        super().__init__()
        self.base = output
        self.adapter = adapter

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.base(hidden_states, input_tensor + self.adapter(input_tensor))


# ---- SSF --------------------------------------------------------------------------------------------
class ScaleShiftOutput(nn.Module):
    """``module(x) * scale + shift`` over the last dimension (SSF); scale ~ N(1, 0.02), shift ~ N(0, 0.02)."""

    def __init__(self, module: nn.Module, dim: int):
        super().__init__()
        self.base = module
        self.scale = nn.Parameter(torch.empty(dim))
        self.shift = nn.Parameter(torch.empty(dim))
        nn.init.normal_(self.scale, mean=1.0, std=0.02)
        nn.init.normal_(self.shift, std=0.02)

    def forward(self, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return self.base(*args, **kwargs) * self.scale + self.shift


def _ssf_targets(model: nn.Module) -> list[tuple[str, int]]:
    """(name, width) of every Linear and LayerNorm in the embeddings and transformer layers."""
    out = []
    for name, module in model.named_modules():
        if not (name.startswith("embeddings") or name.startswith("encoder.layer")):
            continue
        if isinstance(module, nn.Linear):
            out.append((name, module.out_features))
        elif isinstance(module, nn.LayerNorm):
            out.append((name, int(module.normalized_shape[-1])))
    return out


# ---- VPT-deep ---------------------------------------------------------------------------------------
class DeepPrompts(nn.Module):
    """``count`` learned prompt tokens per layer, (layers, count, dim), initialised to zero (official APER VPT).

    The text backbone appends layer ``i``'s prompts after the sentence tokens before layer
    ``i`` (no position embedding) and drops the prompt positions after it, so every layer
    sees its own prompts (VPT-deep); pooling ignores them.
    """

    def __init__(self, layers: int, count: int, dim: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(layers, count, dim))

    @property
    def count(self) -> int:
        """Prompt tokens per layer."""
        return int(self.tokens.shape[1])


# ---- injection --------------------------------------------------------------------------------------
def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def add_encoder_adapter(
    backbone: nn.Module, config: EncoderAdapterConfig, generator: torch.Generator | None = None
) -> list[nn.Parameter]:
    """Freeze ``backbone.encoder`` (a BERT-style ``transformers`` model) and insert ``config.kind``; return what trains.

    ``backbone`` is a :class:`~lifelong.encoders.text_backbone.TextBackbone` (VPT stores its
    prompts in ``backbone.prompts``). New parameters are drawn from ``generator`` (or the
    global generator when None). Calling it twice on one backbone raises :class:`ConfigError`.
    """
    config.validate()
    model = backbone.encoder
    if getattr(backbone, "adapter_kind", None) is not None:
        raise ConfigError(f"the backbone already holds a {backbone.adapter_kind} adapter")
    layers = _layers(model)
    dim = int(model.config.hidden_size)
    for p in model.parameters():
        p.requires_grad_(False)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if config.kind == "adaptformer":
            for layer in layers:
                layer.output = AdaptFormerOutput(layer.output, ParallelAdapter(dim, config.bottleneck, config.scale))
            params = [p for layer in layers for p in layer.output.adapter.parameters()]
        elif config.kind == "ssf":
            params = []
            for name, width in _ssf_targets(model):
                wrapped = ScaleShiftOutput(model.get_submodule(name), width)
                _set_submodule(model, name, wrapped)
                params += [wrapped.scale, wrapped.shift]
        elif config.kind == "vpt":
            backbone.prompts = DeepPrompts(len(layers), config.prompts, dim)
            params = list(backbone.prompts.parameters())
        elif config.kind == "finetune":
            top = len(layers) if config.top_layers is None else min(config.top_layers, len(layers))
            modules = list(layers)[len(layers) - top :] if config.top_layers is not None else [model]
            params = [p for m in modules for p in m.parameters()]
        else:  # lora
            from lifelong.adapters.lora import LoRAConfig, inject_adapter

            lora = LoRAConfig(r=config.rank, alpha=2.0 * config.rank, dropout=0.0, target_modules=("query", "value"))
            inject_adapter(model, lora, "encoder", generator=generator, freeze_base=True)
            params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    ids = {id(p) for p in params}
    backbone.train(backbone.training)  # new modules follow the backbone's train/eval mode
    backbone.adapter_kind = config.kind
    backbone.adapter_names = [n for n, p in backbone.named_parameters() if id(p) in ids]
    return params


def encoder_adapter_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors of the backbone's adapter (or every weight for ``finetune``), by state-dict name.

    A flat name -> tensor dict, the input of ``safetensors.torch.save_file``; load it back
    with ``backbone.load_state_dict(state, strict=False)`` after :func:`add_encoder_adapter`
    with the same config.
    """
    kind = getattr(backbone, "adapter_kind", None)
    if kind is None:
        return {}
    state = backbone.state_dict()
    if kind == "finetune":
        return {k: v.detach().clone() for k, v in state.items()}
    names = set(backbone.adapter_names)
    return {k: state[k].detach().clone() for k in state if k in names}


def load_encoder_adapter_state(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy :func:`encoder_adapter_state` tensors back; a name or shape that does not fit raises ConfigError."""
    own = backbone.state_dict()
    unknown = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(own[k].shape) != tuple(state[k].shape)]
    if unknown or wrong:
        raise ConfigError(
            f"adapter state does not fit this backbone: unknown {unknown[:3]}, wrong shape {wrong[:3]}; "
            "build the backbone with the same adapter config first"
        )
    backbone.load_state_dict(state, strict=False)


__all__ = [
    "ENCODER_ADAPTERS",
    "AdaptFormerOutput",
    "DeepPrompts",
    "EncoderAdapterConfig",
    "ParallelAdapter",
    "ScaleShiftOutput",
    "add_encoder_adapter",
    "encoder_adapter_state",
    "load_encoder_adapter_state",
]
