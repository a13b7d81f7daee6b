"""Paired per-seed verdicts and the CLINC150 class orders of the pre-trained-model reproductions."""

import numpy as np
import pytest

from lifelong.papers.common import clinc_order, paired


def test_paired_difference_interval_and_verdict():
    p = paired([0.90, 0.92, 0.94], [0.85, 0.88, 0.89], margin=0.02)
    d = np.array([0.05, 0.04, 0.05])
    assert p["mean"] == pytest.approx(d.mean()) and p["n"] == 3
    assert p["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert p["lo"] == pytest.approx(d.mean() - 4.302653 * p["se"], rel=1e-5)  # t(0.975, 2 dof)
    assert p["held"] is True
    assert paired([0.90, 0.92, 0.94], [0.85, 0.88, 0.89], margin=0.06)["held"] is False  # mean below margin
    noisy = paired([0.95, 0.85, 0.96], [0.90, 0.90, 0.90], margin=0.0)  # mean +0.02 but the interval spans 0
    assert noisy["mean"] > 0 and noisy["lo"] < 0 and noisy["held"] is False
    one = paired([0.9], [0.85], margin=0.02)
    assert one["held"] is True and np.isnan(one["se"])


def test_clinc_orders():
    class Data:
        coarse_labels = [0, 0, 1, 1, 2, 2]
        num_classes = 6

    assert clinc_order(Data, "domains", 0) == [0, 1, 2, 3, 4, 5]
    assert clinc_order(Data, "domains", 1) == [2, 3, 4, 5, 0, 1]  # rotated: starts with another domain
    mixed = clinc_order(Data, "mixed", 0)
    assert sorted(mixed) == list(range(6)) and mixed == clinc_order(Data, "mixed", 0)
    with pytest.raises(ValueError, match="order"):
        clinc_order(Data, "sorted", 0)


def test_pick_on_validation_takes_the_best_and_keeps_the_earlier_on_ties():
    from lifelong.papers.common import pick_on_validation

    best, scores = pick_on_validation([0.1, 0.01, 0.001], {0.1: 0.5, 0.01: 0.9, 0.001: 0.9}.get)
    assert best == 0.01 and scores == {0.1: 0.5, 0.01: 0.9, 0.001: 0.9}
    assert pick_on_validation([3, 1, 2], lambda v: -abs(v - 2))[0] == 2
    with pytest.raises(ValueError, match="non-empty grid"):
        pick_on_validation([], float)
