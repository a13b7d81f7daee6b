"""Metrics on hand-worked matrices."""

import numpy as np
import pytest

from lifelong.errors import DataError
from lifelong.evaluation import metrics as M

# R[i, j]: accuracy on experience j after learning experience i.
R = np.array([[0.8, 0.1, 0.0], [0.6, 0.9, 0.2], [0.4, 0.7, 1.0]])
INIT = np.array([0.1, 0.1, 0.1])


def test_final_average_accuracy():
    assert M.final_average_accuracy(R) == pytest.approx((0.4 + 0.7 + 1.0) / 3)


def test_average_incremental_accuracy():
    # (0.8 + (0.6+0.9)/2 + (0.4+0.7+1.0)/3) / 3 = (0.8 + 0.75 + 0.7) / 3 = 0.75
    assert M.average_incremental_accuracy(R) == pytest.approx(0.75)


def test_forgetting_uses_best_earlier_accuracy():
    # exp0: max(0.8, 0.6) - 0.4 = 0.4; exp1: 0.9 - 0.7 = 0.2 -> 0.3
    assert M.forgetting(R) == pytest.approx(0.3)
    # a later peak counts: exp0 peaks after exp1
    # a later peak counts: exp0 peaks after exp1 (0.9), ends at 0.7 -> 0.2; exp1: 0.8 - 0.8 = 0 -> 0.1
    R3 = np.array([[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.7, 0.8, 0.9]])
    assert M.forgetting(R3) == pytest.approx(0.1)
    # improving accuracy gives negative forgetting (not clipped)
    assert M.forgetting(np.array([[0.5, 0.0], [0.7, 0.9]])) == pytest.approx(-0.2)


def test_backward_and_forward_transfer():
    # BWT: (0.4-0.8 + 0.7-0.9)/2 = -0.3 ; FWT: (0.1-0.1 + 0.2-0.1)/2 = 0.05
    assert M.backward_transfer(R) == pytest.approx(-0.3)
    assert M.forward_transfer(R, INIT) == pytest.approx(0.05)


def test_partial_matrix_uses_last_row():
    part = R[:2]
    assert M.final_average_accuracy(part) == pytest.approx(0.75)
    assert M.forgetting(part) == pytest.approx(0.2)


def test_undefined_for_one_experience():
    one = np.array([[0.9, 0.0]])
    assert M.forgetting(one) is None
    assert M.backward_transfer(one) is None
    assert M.forward_transfer(one, [0, 0]) is None
    assert M.final_average_accuracy(one) == pytest.approx(0.9)


def test_bad_shapes():
    with pytest.raises(DataError):
        M.final_average_accuracy(np.zeros((3, 2)))
    with pytest.raises(DataError):
        M.forward_transfer(R, [0.1])
