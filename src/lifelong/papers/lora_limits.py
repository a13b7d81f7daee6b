"""Seed paper 6: *Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models*
(Hu, Su, Kuo, Song, Liu; ICLR 2025, arXiv:2406.03136). Implemented by
:mod:`lifelong.adapters.lora_limits`.

The paper's claim (theory): the gradient of a LoRA-adapted attention head has a
hierarchical low-rank structure, so below a threshold on the norm of
``X W_Q* W_K*^T X^T`` it can be approximated to small error in almost linear time by
chained low-rank approximations, while above the threshold no subquadratic algorithm
exists (under SETH). Only the mechanism can be checked on a computer.

:func:`reproduce` (the catalogue's protocol): one head, ``d = 16``, LoRA rank 4 on
``W_Q`` and ``W_V``, random weights; the inputs are rescaled so that ``max |S_ij|``
takes each value in {0.5, 1, 2, 4, 8}; the chained approximation uses the degree-4
Taylor kernel (rank ``C(20, 4) = 4845``). Criterion: relative error of the LoRA-factor
gradients < 1e-2 for ``max |S| <= 1`` and > 0.5 at ``max |S| = 8``; at ``full`` scale
also near-linear time, ``time(L=2048) / time(L=512) < 6`` for the approximation while
the exact gradient's ratio is > 10. Also measured: the smallest even degree reaching
1e-2 error at each bound (``d = 4``, so high degrees stay affordable) and its rank.
``quick``: ``L = 256``; ``full``: ``L = 1024`` for the error sweep and
``L`` in {512, 1024, 2048} for the timings. Float64, one thread, seed 0.
"""

from __future__ import annotations

import time

import torch

from lifelong.papers.base import Claim, Paper

BOUNDS = (0.5, 1.0, 2.0, 4.0, 8.0)
DEGREE = 4


def _timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def reproduce(scale: str = "quick") -> Claim:
    """Sweep ``max |S|``: gradient error of the degree-4 chained low-rank approximation (and timings at full scale)."""
    from lifelong.adapters.lora_limits import (degree_needed, exact_gradients, lowrank_gradients, make_problem,
                                               relative_error, scale_to_bound, taylor_feature_count)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        length = 256 if scale == "quick" else 1024
        base = make_problem(length, 16, 4, targets=("q", "v"), seed=0)
        measured: dict = {"L": length, "d": 16, "lora_rank": 4, "taylor_degree": DEGREE,
                          "kernel_rank": taylor_feature_count(16, DEGREE)}
        errors = {}
        for b in BOUNDS:
            p = scale_to_bound(base, b)
            errors[b] = relative_error(lowrank_gradients(p, DEGREE), exact_gradients(p))
            measured[f"rel_error_maxS_{b:g}"] = errors[b]
        small = make_problem(128 if scale == "quick" else 512, 4, 2, targets=("q", "v"), seed=0)
        for b in BOUNDS:
            g = degree_needed(scale_to_bound(small, b), 1e-2, max_degree=24)
            measured[f"degree_for_1e-2_maxS_{b:g}"] = g if g is not None else ">24"
            measured[f"rank_for_1e-2_maxS_{b:g}"] = taylor_feature_count(4, g) if g is not None else "n/a"
        held = all(errors[b] < 1e-2 for b in BOUNDS if b <= 1) and errors[8.0] > 0.5
        criterion = "relative gradient error (degree 4) < 1e-2 for max|S| <= 1 and > 0.5 at max|S| = 8"
        if scale == "full":
            times = {}
            for n in (512, 1024, 2048):
                p = scale_to_bound(make_problem(n, 16, 4, targets=("q", "v"), seed=0), 1.0)
                times[n] = (_timed(lambda: exact_gradients(p)), _timed(lambda: lowrank_gradients(p, DEGREE)))
                measured[f"seconds_exact_L{n}"] = times[n][0]
                measured[f"seconds_lowrank_L{n}"] = times[n][1]
            ratio_exact = times[2048][0] / times[512][0]
            ratio_low = times[2048][1] / times[512][1]
            measured.update(time_ratio_exact_2048_over_512=ratio_exact, time_ratio_lowrank_2048_over_512=ratio_low)
            held = held and ratio_low < 6 and ratio_exact > 10
            criterion += "; time(L=2048)/time(L=512) < 6 for the approximation and > 10 for the exact gradient"
    finally:
        torch.set_num_threads(previous)
    return Claim(
        paper=PAPER.short_name,
        statement=("the LoRA gradient of attention admits a chained low-rank approximation with small error below a "
                   "norm threshold on X W_Q* W_K*^T X^T (in almost linear time), and not above it"),
        criterion=criterion,
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=("S = Q K^T without 1/sqrt(d); the low-rank kernel is the Taylor polynomial of exp (rank C(d+g, g)); "
               "one head with random weights. The degree needed for 1e-2 error (d = 4) shows how the rank a "
               "low-rank approximation needs grows with the bound. The approximation costs O(L C(d+g,g) d^2): "
               "linear in L but with a large constant, so at these L the exact O(L^2 d) gradient is faster."),
    )


PAPER = Paper(
    number=6,
    short_name="lora-limits",
    title="Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models",
    category="other",
    status="claim checked",
    implemented_by=("lifelong.adapters.lora_limits",),
    arxiv="2406.03136",
    reproduce=reproduce,
)
