"""Seed paper 48: *Continual Learning of Large Language Models: A Comprehensive Survey*.

The survey proposes no algorithm. In this library it fixes two things:

- the evaluation metrics of a continual run, as pure functions of the accuracy
  matrix ``R`` (:mod:`lifelong.evaluation.metrics`): final average accuracy,
  average incremental accuracy, forgetting, backward and forward transfer;
- the names of scenarios (:mod:`lifelong.scenarios.taxonomy`): the learning stages
  CPT / DAP / CFT, vertical vs horizontal continuity, and the incremental settings.

:func:`reproduce` checks that the library's metric functions give the numbers
worked out by hand below for three small accuracy matrices, and that the taxonomy
covers the survey's three stages. Run it with ``lifelong reproduce cl-llm-survey``.
"""

from __future__ import annotations

from lifelong.papers.base import Claim, Paper

TOLERANCE = 1e-9

# Three hand-made runs of T = 3 experiences. R[i][j] = accuracy on experience j after
# learning experience i; ``initial[j]`` = accuracy on experience j before any learning.
# The expected numbers are worked out by hand in the comments (exact fractions), not
# with the library's formulas.
CASES: dict[str, dict] = {
    # A: ordinary forgetting, peak right after learning each experience.
    #   final average accuracy   = (0.5 + 0.7 + 0.9) / 3                      = 2.1 / 3 = 0.7
    #   avg incremental accuracy = (0.9 + (0.6+0.8)/2 + (0.5+0.7+0.9)/3) / 3
    #                            = (0.9 + 0.7 + 0.7) / 3                      = 2.3 / 3 = 23/30
    #   forgetting: exp 0: max(0.9, 0.6) - 0.5 = 0.4; exp 1: 0.8 - 0.7 = 0.1  -> 0.5 / 2 = 0.25
    #   backward transfer: exp 0: 0.5 - 0.9 = -0.4; exp 1: 0.7 - 0.8 = -0.1  -> -0.25
    #   forward transfer: exp 1: R[0][1] - 0.05 = 0.05; exp 2: R[1][2] - 0.1 = 0.1 -> 0.075
    "A": {
        "R": [[0.9, 0.1, 0.0],
              [0.6, 0.8, 0.2],
              [0.5, 0.7, 0.9]],
        "initial": [0.1, 0.05, 0.1],
        "expected": {
            "final_average_accuracy": 0.7,
            "average_incremental_accuracy": 23 / 30,
            "forgetting": 0.25,
            "backward_transfer": -0.25,
            "forward_transfer": 0.075,
        },
    },
    # B: accuracy on an old experience peaks *after* it was learned (positive backward
    # transfer), so forgetting and -BWT differ; the final row is excluded from the max.
    #   final average accuracy   = (0.6 + 0.9 + 1.0) / 3                      = 2.5 / 3 = 5/6
    #   avg incremental accuracy = (0.5 + (0.8+0.6)/2 + 2.5/3) / 3
    #                            = (45/90 + 63/90 + 75/90) / 3 = (183/90) / 3 = 61/90
    #   forgetting: exp 0: max(0.5, 0.8) - 0.6 = 0.2; exp 1: 0.6 - 0.9 = -0.3 -> -0.1 / 2 = -0.05
    #   backward transfer: exp 0: 0.6 - 0.5 = 0.1; exp 1: 0.9 - 0.6 = 0.3  -> 0.4 / 2 = 0.2
    #   forward transfer: exp 1: 0.0 - 0.1 = -0.1; exp 2: 0.3 - 0.1 = 0.2   -> 0.1 / 2 = 0.05
    "B": {
        "R": [[0.5, 0.0, 0.0],
              [0.8, 0.6, 0.3],
              [0.6, 0.9, 1.0]],
        "initial": [0.0, 0.1, 0.1],
        "expected": {
            "final_average_accuracy": 5 / 6,
            "average_incremental_accuracy": 61 / 90,
            "forgetting": -0.05,
            "backward_transfer": 0.2,
            "forward_transfer": 0.05,
        },
    },
    # C: catastrophic forgetting (plain fine-tuning at its worst): each experience is
    # learned perfectly and then lost completely.
    #   final average accuracy   = (0 + 0 + 1) / 3                          = 1/3
    #   avg incremental accuracy = (1 + 1/2 + 1/3) / 3 = (11/6) / 3          = 11/18
    #   forgetting: exp 0: 1 - 0 = 1; exp 1: 1 - 0 = 1                       -> 1
    #   backward transfer: exp 0: 0 - 1; exp 1: 0 - 1                        -> -1
    #   forward transfer: exp 1: 0 - 0; exp 2: 0 - 0                         -> 0
    "C": {
        "R": [[1.0, 0.0, 0.0],
              [0.0, 1.0, 0.0],
              [0.0, 0.0, 1.0]],
        "initial": [0.0, 0.0, 0.0],
        "expected": {
            "final_average_accuracy": 1 / 3,
            "average_incremental_accuracy": 11 / 18,
            "forgetting": 1.0,
            "backward_transfer": -1.0,
            "forward_transfer": 0.0,
        },
    },
}

#: The stages the survey organises continual learning of LLMs into.
SURVEY_STAGES = ("CPT", "DAP", "CFT")


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


def _invariant_violations(n_matrices: int = 2000, T: int = 5, seed: int = 0) -> dict[str, int]:
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
        if m["forgetting"] < -m["backward_transfer"] - TOLERANCE:
            bad_order += 1
        R2 = R.copy()
        R2[upper] = rng.random(int(upper.sum()))
        m2 = _metric_values(R2, initial)
        keys = ("final_average_accuracy", "average_incremental_accuracy", "forgetting", "backward_transfer")
        if any(abs(m[k] - m2[k]) > TOLERANCE for k in keys):
            bad_upper += 1
    return {"forgetting_below_minus_bwt": bad_order, "upper_triangle_changed_metric": bad_upper}


def reproduce(scale: str = "quick") -> Claim:
    """Check the metric definitions and the stage taxonomy against hand-worked values.

    ``quick``: the five metrics on three hand-made 3x3 matrices (15 numbers) and the
    taxonomy. ``full`` adds two invariants checked on 2,000 random 5x5 matrices.
    Held when every number matches to 1e-9, the taxonomy has CPT, DAP and CFT, and
    (full) no invariant fails.
    """
    import numpy as np

    from lifelong.scenarios.taxonomy import CLStage, Continuity, IncrementalSetting

    measured: dict = {}
    worst = 0.0
    mismatches = []
    for case, spec in CASES.items():
        got = _metric_values(np.array(spec["R"]), np.array(spec["initial"]))
        for name, expected in spec["expected"].items():
            value = got[name]
            error = float("inf") if value is None else abs(float(value) - expected)
            worst = max(worst, error)
            if not error <= TOLERANCE:
                mismatches.append(f"{case}/{name}: got {value}, expected {expected}")
            measured[f"{case}/{name}"] = None if value is None else float(value)
    stages = {s.name for s in CLStage}
    missing_stages = [s for s in SURVEY_STAGES if s not in stages]
    measured["max_abs_error"] = worst
    measured["taxonomy_stages"] = ", ".join(s.name for s in CLStage)
    measured["taxonomy_continuity"] = ", ".join(c.value for c in Continuity)
    measured["taxonomy_settings"] = ", ".join(s.value for s in IncrementalSetting)
    held = not mismatches and not missing_stages
    criterion = ("all 15 metric values (5 metrics x 3 hand-made 3x3 matrices) equal the hand-worked values "
                 "to 1e-9; CLStage covers CPT, DAP and CFT")
    if scale == "full":
        violations = _invariant_violations()
        measured.update(violations)
        held = held and not any(violations.values())
        criterion += "; on 2,000 random 5x5 matrices forgetting >= -BWT and the upper triangle changes no " \
                     "metric but forward transfer"
    notes = "hand-made matrices and worked values: lifelong/papers/cl_llm_survey.py (CASES)"
    if mismatches:
        notes += "; mismatches: " + "; ".join(mismatches)
    if missing_stages:
        notes += "; missing stages: " + ", ".join(missing_stages)
    return Claim(
        paper=PAPER.short_name,
        statement=("the library's continual-learning metrics (final and average incremental accuracy, forgetting, "
                   "backward and forward transfer) follow the survey's definitions, and its scenario taxonomy "
                   "has the survey's stages CPT, DAP and CFT"),
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
