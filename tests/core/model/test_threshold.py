from __future__ import annotations

import numpy as np
import pytest

from app.core.errors import InvalidInputError
from app.core.model.threshold import max_f1_threshold


def test_max_f1_threshold_separable_scores_returns_lowest_fraud_score() -> None:
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.9])

    assert max_f1_threshold(y, scores) == 0.7


def test_max_f1_threshold_overlapping_scores_returns_best_f1_cut() -> None:
    # Cut at 0.6: tp 2, fp 1, fn 0 -> F1 0.8; cut at 0.8: tp 1, fn 1 -> F1 0.667.
    y = np.array([0, 0, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.8])

    assert max_f1_threshold(y, scores) == 0.6


def test_max_f1_threshold_no_fraud_raises_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="no fraud"):
        max_f1_threshold(np.zeros(5, dtype=int), np.linspace(0, 1, 5))
