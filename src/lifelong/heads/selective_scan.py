"""A pure-PyTorch selective state-space (S6 / Mamba) block, as used by Mamba-FSCIL's projector.

Selective scan (Gu & Dao, *Mamba*, 2023, Algorithm 2), the building block of the dual
selective SSM projector of Mamba-FSCIL (Li et al. 2024, seed paper 50). For a token
sequence ``u`` of shape ``(batch, L, d_inner)`` the step size ``Δ``, the input matrix
``B`` and the output matrix ``C`` are functions of the input (that is what makes the
scan *selective*):

    Δ_t = softplus(W_Δ u_t + b_Δ),  B_t = W_B u_t,  C_t = W_C u_t,  A = -exp(A_log)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t B_t) u_t,      y_t = C_t · h_t + D ⊙ u_t

No CUDA kernel: the recurrence is a Python loop over the (short) sequence length,
vectorised over batch, channels and state. :class:`SelectiveSSMBlock` wraps it like
the Mamba block: input projection to a value and a gate, SiLU, scan, gating, output
projection. It returns the output tokens and the input-dependent ``(Δ, B, C)`` that
Mamba-FSCIL's separation loss acts on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import DataError


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor) -> torch.Tensor:
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
        raise DataError(f"selective_scan: shapes disagree: u {tuple(u.shape)}, delta {tuple(delta.shape)}, "
                        f"B {tuple(B.shape)}, C {tuple(C.shape)}")
    n, L, d = u.shape
    decay = torch.exp(delta.unsqueeze(-1) * A)                       # (n, L, d, N)
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)               # (n, L, d, N)
    h = u.new_zeros(n, d, A.shape[1])
    ys = []
    for t in range(L):
        h = decay[:, t] * h + drive[:, t]
        ys.append((h * C[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, 1) + u * D


class SelectiveSSMBlock(nn.Module):
    """Mamba-style block over ``(n, L, d_model)`` tokens with a pure-torch selective scan.

    Args:
        d_model: token width.
        d_inner: width of the scanned channels.
        d_state: state size ``N``.
        zero_out: start the output projection at zero (the block then adds nothing at
            first — how Mamba-FSCIL's dynamic branch starts an incremental session).

    ``forward`` returns ``(out, params)`` with ``out`` of shape ``(n, L, d_model)`` and
    ``params = {"dt": Δ, "B": B, "C": C}``.
    """

    def __init__(self, d_model: int, d_inner: int = 64, d_state: int = 16, zero_out: bool = False):
        super().__init__()
        self.d_inner, self.d_state = d_inner, d_state
        dt_rank = max(1, math.ceil(d_model / 16))
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        self.dt_rank = dt_rank
        # Mamba's S4D-real initialisation A_n = -(n+1) and Δ in [1e-3, 1e-1]
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        with torch.no_grad():
            dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.out_proj = nn.Linear(d_inner, d_model)
        if zero_out:
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x, z = self.in_proj(tokens).chunk(2, dim=-1)
        x = F.silu(x)
        dbc = self.x_proj(x)
        dt, B, C = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(x, delta, -torch.exp(self.A_log), B, C, self.D)
        out = self.out_proj(y * F.silu(z))
        return out, {"dt": delta, "B": B, "C": C}


__all__ = ["selective_scan", "SelectiveSSMBlock"]
