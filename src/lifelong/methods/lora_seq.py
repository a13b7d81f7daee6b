"""Sequential LoRA (``lora-seq``): one LoRA adapter per experience, merged or kept.

The plain baseline of continual learning over PEFT adapters (LoRA: Low-Rank Adaptation of Large Language
Models, arXiv 2106.09685): the backbone stays frozen, each experience trains a fresh adapter on its
``nn.Linear`` layers with the linear head, cross-entropy over the classes seen so far. ``mode="merge"`` folds
each adapter into the weights; ``mode="keep"`` keeps them separate (exportable in HF PEFT's format).
Backbones: ``"mlp"`` over vectors, or ``"minilm"`` / a local HF encoder over token ids
(:func:`text_token_dataset`). ``variant="allora"`` trains ALLoRA adapters (arXiv 2410.09692).

Notes: docs/papers/lora-seq.md
"""

from __future__ import annotations

from lifelong.data.tokens import text_token_dataset
from lifelong.encoders.text_backbone import TextBackbone
from lifelong.methods.base_lora import LoRASeqConfig, LoRASequence
from lifelong.methods.registry import register


@register("lora-seq")
class LoRASeq(LoRASequence):
    """One LoRA (or ALLoRA) adapter per experience on a frozen backbone, plus a trained linear head.

    Adapter of experience ``i`` is named ``"task{i}"``. See the module docstring for the
    two modes and the backbones.
    """

    config_class = LoRASeqConfig


__all__ = ["LoRASeq", "LoRASeqConfig", "TextBackbone", "text_token_dataset"]
