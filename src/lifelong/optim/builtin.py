"""Registrations of the standard PyTorch optimizers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lifelong.optim.registry import register_optimizer

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT


@register_optimizer("sgd")
def sgd(params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.SGD:
    """Stochastic gradient descent with optional momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@register_optimizer("adam")
def adam(params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam (Kingma & Ba, 2015); ``momentum`` is ignored."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("adamw")
def adamw(params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay (Loshchilov & Hutter, 2019)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("adagrad")
def adagrad(params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Adagrad:
    """AdaGrad (Duchi et al., 2011)."""
    return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
