"""Paper 6: *Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models*
(Hu, Su, Kuo, Song, Liu; ICLR 2025, arXiv:2406.03136). Implemented by :mod:`lifelong.adapters.lora_limits`.

Claim (theory): with the entries of ``Q = X W_Q*`` and ``K = X W_K*`` bounded by ``Gamma`` below a
threshold, the LoRA gradient of an attention head can be approximated to small error in almost linear
time by chained low-rank approximations, and not above it; the rank such an approximation needs grows
with the bound. Only the mechanism can be checked on a computer: :func:`check` sweeps ``Gamma`` and
measures the gradient error, the degree (rank) needed for a target error and, at full scale, timings;
protocol in ``specs/lora-limits.toml``.
"""

from __future__ import annotations

import time
from dataclasses import replace

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
    """Sweep the entry bound ``Gamma`` at ``scale`` (settings from ``specs/lora-limits.toml``)."""
    return check(load_spec("lora-limits", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Sweep ``Gamma``: gradient error at a fixed degree, degree needed for the target error, timings when asked."""
    from lifelong.adapters.lora_limits import (
        bound_entries,
        degree_needed,
        exact_gradients,
        lowrank_gradients,
        make_problem,
        max_entries,
        relative_error,
        taylor_feature_count,
    )
    from lifelong.papers.common import sci
    from lifelong.runtime import single_thread

    d, rank, seed, degree = settings["d"], settings["lora_rank"], settings["seed"], settings["degree"]
    targets, bounds = tuple(settings["lora_targets"]), settings["bounds"]
    small_error, large_error, ds = settings["small_error"], settings["large_error"], settings["degree_search"]
    if list(bounds) != sorted(bounds):
        raise ValueError(f"bounds must be increasing, got {bounds}")

    # one problem (weights, LoRA factors, rows of X and Y); shorter sequences are its first rows, so the
    # lengths compared differ only in L
    longest = max([settings["length"], *settings["length_check"]])
    base = make_problem(longest, d, rank, targets=targets, seed=seed)

    def error(n: int, b: float) -> tuple[float, object]:
        p = bound_entries(replace(base, x=base.x[:n], y=base.y[:n]), b)
        return relative_error(lowrank_gradients(p, degree), exact_gradients(p)), p

    with single_thread():
        length = settings["length"]
        measured: dict = {
            "L": length,
            "d": d,
            "lora_rank": rank,
            "taylor_degree": degree,
            "kernel_rank": taylor_feature_count(d, degree),
        }
        errors = {}
        for b in bounds:
            errors[b], p = error(length, b)
            mq, mk = max_entries(p)
            measured[f"rel_error_gamma_{b:g}"] = errors[b]
            measured[f"max_abs_QK_gamma_{b:g}"] = round(max(mq, mk), 4)
            measured[f"max_abs_S_gamma_{b:g}"] = round(p.max_score(), 4)
        # the error at a fixed bound should not fall with L (it did with a bound on max|S|)
        for n in settings["length_check"]:
            for b in settings["length_check_bounds"]:
                measured[f"rel_error_gamma_{b:g}_L{n}"] = error(n, b)[0]
        needed = {}
        small = make_problem(settings["degree_search_length"], ds["d"], ds["lora_rank"], targets=targets, seed=seed)
        for b in bounds:
            g = degree_needed(bound_entries(small, b), small_error, max_degree=ds["max_degree"])
            needed[b] = g if g is not None else ds["max_degree"] + 2  # beyond the search: counted as larger
            measured[f"degree_for_{sci(small_error)}_gamma_{b:g}"] = g if g is not None else f">{ds['max_degree']}"
            measured[f"rank_for_{sci(small_error)}_gamma_{b:g}"] = (
                taylor_feature_count(ds["d"], g)
                if g is not None
                else f">{taylor_feature_count(ds['d'], ds['max_degree'])}"
            )
        degrees = [needed[b] for b in bounds]
        held_small = all(errors[b] < small_error for b in bounds if b <= settings["small_bound"])
        held_large = errors[bounds[-1]] > large_error
        held_rank = all(a <= b for a, b in zip(degrees, degrees[1:])) and degrees[-1] > degrees[0]
        measured.update({"held_small_bound": held_small, "held_large_bound": held_large, "held_rank_grows": held_rank})
        held = held_small and held_large and held_rank
        criterion = (
            f"with every entry of Q and K bounded by Gamma: relative gradient error (degree {degree}) < "
            f"{sci(small_error)} for Gamma <= {settings['small_bound']:g} and > {large_error:g} at Gamma = "
            f"{bounds[-1]:g}; the Taylor degree (rank) needed for {sci(small_error)} (d = {ds['d']}) never falls "
            f"as Gamma grows and is larger at Gamma = {bounds[-1]:g} than at {bounds[0]:g}"
        )
        lengths, tm = settings["timing_lengths"], settings["timing"]
        if lengths:
            times = {}
            for n in lengths:
                p = bound_entries(make_problem(n, d, rank, targets=targets, seed=seed), tm["bound"])
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
            held_time = ratio_low < tm["max_lowrank_ratio"] and ratio_exact > tm["min_exact_ratio"]
            measured["held_time"] = held_time
            held = held and held_time
            criterion += (
                f"; time(L={hi})/time(L={lo}) < {tm['max_lowrank_ratio']:g} for the approximation and > "
                f"{tm['min_exact_ratio']:g} for the exact gradient (Gamma = {tm['bound']:g})"
            )
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "with the entries of X W_Q* and X W_K* bounded by Gamma, the LoRA gradient of attention admits a "
            "chained low-rank approximation with small error (in almost linear time) for small Gamma and not for "
            "large Gamma; the rank needed grows with Gamma"
        ),
        criterion=criterion,
        measured=measured,
        held=bool(held),
        scale=scale,
        notes=(
            "Rows of X rescaled to one norm so that |Q_ij|, |K_ij| <= Gamma for any L (the paper's bounded-entries "
            "assumption; the measured max entry is about 0.7 Gamma); S = Q K^T without 1/sqrt(d); the "
            "low-rank kernel is the Taylor polynomial of exp (rank C(d+g, g)); one head with random weights. "
            "The approximation costs O(L C(d+g,g) d^2): linear in L but with a large constant, so at these L "
            "the exact O(L^2 d) gradient is faster."
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
