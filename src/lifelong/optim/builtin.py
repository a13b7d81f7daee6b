"""Registrations of the standard PyTorch optimizers."""

import torch

from lifelong.optim.registry import register_optimizer


@register_optimizer("sgd")
def sgd(params, *, lr, momentum=0.0, weight_decay=0.0):
    """Stochastic gradient descent with optional momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@register_optimizer("adam")
def adam(params, *, lr, momentum=0.0, weight_decay=0.0):
    """Adam (Kingma & Ba, 2015); ``momentum`` is ignored."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("adamw")
def adamw(params, *, lr, momentum=0.0, weight_decay=0.0):
    """AdamW with decoupled weight decay (Loshchilov & Hutter, 2019)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("adagrad")
def adagrad(params, *, lr, momentum=0.0, weight_decay=0.0):
    """AdaGrad (Duchi et al., 2011)."""
    return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
