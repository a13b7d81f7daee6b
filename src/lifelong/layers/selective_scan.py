"""A pure-PyTorch selective state-space (S6 / Mamba) block, as used by Mamba-FSCIL's projector.

Selective scan (Mamba, arXiv 2312.00752, Algorithm 2) for the dual selective SSM projector of Mamba-FSCIL
(arXiv 2407.06136): ``Δ``, ``B`` and ``C`` are functions of the input, and the recurrence is a Python loop
over the (short) sequence, vectorised over batch, channels and state (no CUDA kernel).
:class:`SelectiveSSMBlock` wraps it like the Mamba block (input projection to value and gate, short causal
depthwise convolution, SiLU, scan, gating, optional output projection) and also returns the input-dependent
``(dt, B, C)`` (``dt``: the low-rank step-size input) that Mamba-FSCIL's separation loss acts on.

Notes: docs/papers/mamba-fscil.md
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import DataError


def selective_scan(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Run the selective-scan recurrence (Mamba S6) over the sequence axis.

    Args:
        u: ``(n, L, d)`` inputs.
        delta: ``(n, L, d)`` positive step sizes.
        A: ``(d, N)`` (negative) state matrix diagonal per channel.
        B: ``(n, L, N)`` input-dependent input matrices.
        C: ``(n, L, N)`` input-dependent output matrices.
        D: ``(d,)`` skip weights.

    Returns ``(n, L, d)``; the loop runs over ``L`` only.
    """
    if u.ndim != 3 or delta.shape != u.shape or B.shape[:2] != u.shape[:2] or C.shape != B.shape:
        raise DataError(
            f"selective_scan: shapes disagree: u {tuple(u.shape)}, delta {tuple(delta.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    n, L, d = u.shape
    decay = torch.exp(delta.unsqueeze(-1) * A).unbind(1)  # L x (n, d, N)
    drive = ((delta * u).unsqueeze(-1) * B.unsqueeze(2)).unbind(1)  # L x (n, d, N)
    Cs = C.unsqueeze(-1).unbind(1)  # L x (n, N, 1)
    h = drive[0]
    ys = [torch.bmm(h, Cs[0])]
    for t in range(1, L):  # unbind, not indexing: indexing's backward fills a full zero tensor per step
        h = torch.addcmul(drive[t], decay[t], h)
        ys.append(torch.bmm(h, Cs[t]))
    return torch.cat(ys, -1).transpose(1, 2) + u * D


class SelectiveSSMBlock(nn.Module):
    """Mamba-style block over ``(n, L, d_model)`` tokens with a pure-torch selective scan.

    Args:
        d_model: token width.
        d_inner: width of the scanned channels.
        d_state: state size ``N``.
        zero_out: start the output projection at zero (the block then adds nothing at first).
        out_proj: keep Mamba's output projection (``False``: as Mamba-FSCIL's neck, which
            needs ``d_inner == d_model``).
        zero_gate: start the gate half of the input projection at zero, so ``silu(z) = 0``
            and the block adds nothing at first (how Mamba-FSCIL's dynamic branch starts).
        d_conv: width of Mamba's causal depthwise convolution before the scan (0: none).

    ``forward`` returns ``(out, params)`` with ``out`` of shape ``(n, L, d_model)`` and
    ``params = {"dt": dt, "B": B, "C": C}``, where ``dt`` is the low-rank step-size input ``(n, L, dt_rank)``
    before ``dt_proj`` and the softplus (what the official Mamba-FSCIL ``Mamba.forward(return_param=True)``
    returns), and ``B``, ``C`` are ``(n, L, d_state)``.
    """

    def __init__(
        self,
        d_model: int,
        d_inner: int = 64,
        d_state: int = 16,
        zero_out: bool = False,
        out_proj: bool = True,
        zero_gate: bool = False,
        d_conv: int = 4,
    ):
        super().__init__()
        if not out_proj and d_inner != d_model:
            raise DataError(
                f"SelectiveSSMBlock without an output projection needs d_inner == d_model (got {d_inner} and {d_model})"
            )
        self.d_inner, self.d_state, self.d_conv = d_inner, d_state, d_conv
        dt_rank = max(1, math.ceil(d_model / 16))
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        # Mamba's short causal depthwise convolution over the sequence before the SiLU
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1) if d_conv > 0 else None
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        self.dt_rank = dt_rank
        # Mamba's S4D-real initialisation A_n = -(n+1) and Δ in [1e-3, 1e-1]
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        with torch.no_grad():
            dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            if zero_gate:  # the gate z = 0 makes silu(z) = 0: the block outputs zeros until z learns
                self.in_proj.weight[d_inner:].zero_()
                self.in_proj.bias[d_inner:].zero_()
        self.out_proj = nn.Linear(d_inner, d_model) if out_proj else None
        if zero_out and self.out_proj is not None:
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x, z = self.in_proj(tokens).chunk(2, dim=-1)
        if self.conv is not None:  # causal depthwise conv as shifted multiply-adds (faster than Conv1d for short L)
            L, w = x.shape[1], self.conv.weight[:, 0]  # w: (d_inner, d_conv)
            xp = F.pad(x, (0, 0, self.d_conv - 1, 0))
            x = self.conv.bias + sum(xp[:, k : k + L] * w[:, k] for k in range(self.d_conv))
        x = F.silu(x)
        dbc = self.x_proj(x)
        dt, B, C = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(x, delta, -torch.exp(self.A_log), B, C, self.D)
        out = y * F.silu(z)
        if self.out_proj is not None:
            out = self.out_proj(out)
        return out, {"dt": dt, "B": B, "C": C}


__all__ = ["selective_scan", "SelectiveSSMBlock"]
