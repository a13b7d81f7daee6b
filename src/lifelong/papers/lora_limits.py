"""Paper 6: *Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models*
(Hu, Su, Kuo, Song, Liu; ICLR 2025, arXiv:2406.03136). Implemented by :mod:`lifelong.adapters.lora_limits`.

Claim (theory): below a threshold on the norm of ``X W_Q* W_K*^T X^T`` the LoRA gradient of an
attention head can be approximated to small error in almost linear time by chained low-rank
approximations, and not above it. Only the mechanism can be checked on a computer: :func:`check`
sweeps ``max |S|`` and measures the gradient error (and, at full scale, timings); protocol in
``specs/lora-limits.toml``.
"""

from __future__ import annotations

import time

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def reproduce(scale: str = "quick") -> Claim:
    """Sweep ``max |S|`` at ``scale`` (settings from ``specs/lora-limits.toml``)."""
    return check(load_spec("lora-limits", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Sweep ``max |S|``: gradient error of the chained low-rank approximation (and timings when asked)."""
    from lifelong.adapters.lora_limits import (
        degree_needed,
        exact_gradients,
        lowrank_gradients,
        make_problem,
        relative_error,
        scale_to_bound,
        taylor_feature_count,
    )
    from lifelong.papers.common import sci
    from lifelong.runtime import single_thread

    d, rank, seed, degree = settings["d"], settings["lora_rank"], settings["seed"], settings["degree"]
    targets, bounds = tuple(settings["lora_targets"]), settings["bounds"]
    small_error, large_error, ds = settings["small_error"], settings["large_error"], settings["degree_search"]
    with single_thread():
        length = settings["length"]
        base = make_problem(length, d, rank, targets=targets, seed=seed)
        measured: dict = {
            "L": length,
            "d": d,
            "lora_rank": rank,
            "taylor_degree": degree,
            "kernel_rank": taylor_feature_count(d, degree),
        }
        errors = {}
        for b in bounds:
            p = scale_to_bound(base, b)
            errors[b] = relative_error(lowrank_gradients(p, degree), exact_gradients(p))
            measured[f"rel_error_maxS_{b:g}"] = errors[b]
        small = make_problem(settings["degree_search_length"], ds["d"], ds["lora_rank"], targets=targets, seed=seed)
        for b in bounds:
            g = degree_needed(scale_to_bound(small, b), small_error, max_degree=ds["max_degree"])
            measured[f"degree_for_{sci(small_error)}_maxS_{b:g}"] = g if g is not None else f">{ds['max_degree']}"
            measured[f"rank_for_{sci(small_error)}_maxS_{b:g}"] = (
                taylor_feature_count(ds["d"], g) if g is not None else "n/a"
            )
        held = (
            all(errors[b] < small_error for b in bounds if b <= settings["small_bound"])
            and errors[bounds[-1]] > large_error
        )
        criterion = (
            f"relative gradient error (degree {degree}) < {sci(small_error)} for max|S| <= "
            f"{settings['small_bound']:g} and > {large_error:g} at max|S| = {bounds[-1]:g}"
        )
        lengths, tm = settings["timing_lengths"], settings["timing"]
        if lengths:
            times = {}
            for n in lengths:
                p = scale_to_bound(make_problem(n, d, rank, targets=targets, seed=seed), tm["bound"])
                times[n] = (
                    _timed(lambda p=p: exact_gradients(p), tm["repeats"]),
                    _timed(lambda p=p: lowrank_gradients(p, degree), tm["repeats"]),
                )
                measured[f"seconds_exact_L{n}"] = times[n][0]
                measured[f"seconds_lowrank_L{n}"] = times[n][1]
            hi, lo = lengths[-1], lengths[0]
            ratio_exact = times[hi][0] / times[lo][0]
            ratio_low = times[hi][1] / times[lo][1]
            measured.update(
                {f"time_ratio_exact_{hi}_over_{lo}": ratio_exact, f"time_ratio_lowrank_{hi}_over_{lo}": ratio_low}
            )
            held = held and ratio_low < tm["max_lowrank_ratio"] and ratio_exact > tm["min_exact_ratio"]
            criterion += (
                f"; time(L={hi})/time(L={lo}) < {tm['max_lowrank_ratio']:g} for the approximation and > "
                f"{tm['min_exact_ratio']:g} for the exact gradient"
            )
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "the LoRA gradient of attention admits a chained low-rank approximation with small error below a "
            "norm threshold on X W_Q* W_K*^T X^T (in almost linear time), and not above it"
        ),
        criterion=criterion,
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            "S = Q K^T without 1/sqrt(d); the low-rank kernel is the Taylor polynomial of exp (rank C(d+g, g)); "
            "one head with random weights. The degree needed for the target error (smaller d) shows how the rank "
            "a low-rank approximation needs grows with the bound. The approximation costs O(L C(d+g,g) d^2): "
            "linear in L but with a large constant, so at these L the exact O(L^2 d) gradient is faster."
        ),
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
