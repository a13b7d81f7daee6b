"""Paper 48: *Continual Learning of Large Language Models: A Comprehensive Survey*.

The survey proposes no algorithm; here it fixes the metrics of a continual run
(:mod:`lifelong.evaluation.metrics`) and the scenario names (:mod:`lifelong.scenarios.taxonomy`).
:func:`check` compares the library's metrics with hand-worked values on the small accuracy
matrices of ``specs/cl-llm-survey.toml`` and checks that the taxonomy has the survey's stages.
Run ``lifelong reproduce cl-llm-survey``.
"""

from __future__ import annotations

from lifelong.papers.base import Claim, Paper
from lifelong.papers.spec import load_spec


def _metric_values(R, initial) -> dict[str, float]:
    """The library's five metrics on one matrix."""
    from lifelong.evaluation import metrics

    return {
        "final_average_accuracy": metrics.final_average_accuracy(R),
        "average_incremental_accuracy": metrics.average_incremental_accuracy(R),
        "forgetting": metrics.forgetting(R),
        "backward_transfer": metrics.backward_transfer(R),
        "forward_transfer": metrics.forward_transfer(R, initial),
    }


def _invariant_violations(n_matrices: int, T: int, seed: int, tolerance: float) -> dict[str, int]:
    """Count random matrices on which a property every correct definition has fails.

    - forgetting >= -backward transfer (the max over rows includes the diagonal);
    - the strictly upper triangle (experiences not yet learned) changes neither the
      final or average incremental accuracy, nor forgetting, nor backward transfer.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    upper = np.triu(np.ones((T, T), dtype=bool), k=1)
    bad_order = bad_upper = 0
    for _ in range(n_matrices):
        R = rng.random((T, T))
        initial = rng.random(T)
        m = _metric_values(R, initial)
        if m["forgetting"] < -m["backward_transfer"] - tolerance:
            bad_order += 1
        R2 = R.copy()
        R2[upper] = rng.random(int(upper.sum()))
        m2 = _metric_values(R2, initial)
        keys = ("final_average_accuracy", "average_incremental_accuracy", "forgetting", "backward_transfer")
        if any(abs(m[k] - m2[k]) > tolerance for k in keys):
            bad_upper += 1
    return {"forgetting_below_minus_bwt": bad_order, "upper_triangle_changed_metric": bad_upper}


def reproduce(scale: str = "quick") -> Claim:
    """Check the metric definitions and the stage taxonomy at ``scale`` (settings from the spec)."""
    return check(load_spec("cl-llm-survey", scale), scale)


def check(settings: dict, scale: str) -> Claim:
    """Check the metric definitions and the stage taxonomy against hand-worked values.

    Held when every metric of every case matches to ``tolerance``, the taxonomy has the
    survey's stages and (when ``invariants.matrices`` > 0) no invariant fails.
    """
    import numpy as np

    from lifelong.scenarios.taxonomy import CLStage, Continuity, IncrementalSetting

    tolerance = settings["tolerance"]
    cases = settings["cases"]
    measured: dict = {}
    worst = 0.0
    mismatches = []
    for case, spec in cases.items():
        got = _metric_values(np.array(spec["R"]), np.array(spec["initial"]))
        for name, expected in spec["expected"].items():
            value = got[name]
            error = float("inf") if value is None else abs(float(value) - expected)
            worst = max(worst, error)
            if not error <= tolerance:
                mismatches.append(f"{case}/{name}: got {value}, expected {expected}")
            measured[f"{case}/{name}"] = None if value is None else float(value)
    stages = {s.name for s in CLStage}
    missing_stages = [s for s in settings["stages"] if s not in stages]
    measured["max_abs_error"] = worst
    measured["taxonomy_stages"] = ", ".join(s.name for s in CLStage)
    measured["taxonomy_continuity"] = ", ".join(c.value for c in Continuity)
    measured["taxonomy_settings"] = ", ".join(s.value for s in IncrementalSetting)
    held = not mismatches and not missing_stages
    n_metrics = sum(len(c["expected"]) for c in cases.values())
    criterion = (
        f"all {n_metrics} metric values ({len(cases)} hand-made matrices) equal the hand-worked values "
        f"to {tolerance:g}; CLStage covers {', '.join(settings['stages'])}"
    )
    inv = settings["invariants"]
    if inv["matrices"] > 0:
        violations = _invariant_violations(inv["matrices"], inv["size"], inv["seed"], tolerance)
        measured.update(violations)
        held = held and not any(violations.values())
        criterion += (
            f"; on {inv['matrices']:,} random {inv['size']}x{inv['size']} matrices forgetting >= -BWT "
            "and the upper triangle changes no metric but forward transfer"
        )
    notes = "hand-made matrices and worked values: lifelong/papers/specs/cl-llm-survey.toml (cases)"
    if mismatches:
        notes += "; mismatches: " + "; ".join(mismatches)
    if missing_stages:
        notes += "; missing stages: " + ", ".join(missing_stages)
    return Claim(
        paper=PAPER.short_name,
        statement=(
            "the library's continual-learning metrics (final and average incremental accuracy, forgetting, "
            "backward and forward transfer) follow the survey's definitions, and its scenario taxonomy "
            "has the survey's stages CPT, DAP and CFT"
        ),
        criterion=criterion,
        measured=measured,
        held=held,
        scale=scale,
        notes=notes,
    )


PAPER = Paper(
    number=48,
    short_name="cl-llm-survey",
    title="Continual Learning of Large Language Models: A Comprehensive Survey",
    category="survey",
    status="claim checked",
    implemented_by=("lifelong.evaluation.metrics", "lifelong.scenarios.taxonomy"),
    reproduce=reproduce,
)
