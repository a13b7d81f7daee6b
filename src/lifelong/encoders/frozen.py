"""A frozen encoder as a feature function (the pre-trained model that prototype methods never update)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lifelong.errors import ConfigError


def frozen_encoder(encoder: Callable | nn.Module | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder as a frozen feature function (default: flatten each input).

    An ``nn.Module`` is put in eval mode with its parameters frozen, as the PTM of
    SimpleCIL/APER is never updated.
    """
    if encoder is None:
        return lambda x: x.reshape(len(x), -1)
    if isinstance(encoder, nn.Module):
        encoder.eval()
        for p in encoder.parameters():
            p.requires_grad_(False)
    elif not callable(encoder):
        raise ConfigError(f"encoder must be a callable or an nn.Module, got {type(encoder).__name__}")
    return encoder


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode with every parameter frozen (a distillation teacher)."""
    import copy

    out = copy.deepcopy(module).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out
