"""Choosing the decision threshold on validation scores."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

from app.core.errors import InvalidInputError


def max_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 on (validation) data.

    F1 weighs a missed fraud and a false alarm alike; a business with a fixed review
    budget would pick a precision target instead, behind this same function.
    """
    if y_true.sum() == 0:
        raise InvalidInputError("cannot choose a threshold on data with no fraud")
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    # The curve's last point (precision 1, recall 0) has no threshold of its own.
    precision, recall = precision[:-1], recall[:-1]
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    return float(thresholds[int(np.argmax(f1))])
