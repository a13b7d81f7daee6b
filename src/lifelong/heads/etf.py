"""A fixed simplex equiangular tight frame (ETF): class targets with equal, maximal pairwise angles."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def simplex_etf(num: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``num`` unit vectors in ``dim`` dimensions with pairwise cosine ``-1/(num-1)`` (needs ``dim >= num``).

    ``M = sqrt(K/(K-1)) U (I - 11^T/K)`` with ``U`` a random orthonormal ``dim x K``
    basis. When ``dim < num`` a simplex ETF does not exist; the rows are then random
    unit vectors (nearly orthogonal in high dimension).
    """
    if num < 1:
        return torch.zeros(0, dim)
    if dim < num or num == 1:
        return F.normalize(torch.randn(num, dim, generator=generator), dim=1)
    U, _ = torch.linalg.qr(torch.randn(dim, num, generator=generator))
    M = math.sqrt(num / (num - 1)) * U @ (torch.eye(num) - torch.full((num, num), 1.0 / num))
    return F.normalize(M.T, dim=1).contiguous()  # row-major, as a checkpoint restores it (same GEMM kernel)
