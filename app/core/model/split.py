"""Time-ordered train / validation / holdout splits.

Fraud patterns drift, so the model is validated and judged on transactions that
happen after the ones it learnt from, never on a random shuffle of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from app.core.errors import InvalidInputError
from app.core.model.features import LABEL, labels

# Below this a split's AUPRC or early-stopping signal is noise, not a measurement.
MIN_SPLIT_ROWS = 20

ORDER = ("event_time", "txn_id")


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame


def time_split(
    frame: pd.DataFrame, *, holdout_fraction: float, validation_fraction: float
) -> Splits:
    """Oldest rows train, the next ``validation_fraction`` validate, the newest ``holdout_fraction``
    are held out; fractions are of all rows, ties in ``event_time`` broken by ``txn_id``."""
    missing = [c for c in (*ORDER, LABEL) if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"cannot split: frame lacks columns {', '.join(missing)}")
    if not (0 < holdout_fraction < 1 and 0 < validation_fraction < 1) or (
        holdout_fraction + validation_fraction >= 1
    ):
        raise InvalidInputError(
            f"holdout_fraction {holdout_fraction} and validation_fraction {validation_fraction} "
            "must each be in (0, 1) and leave rows to train on"
        )
    ordered = frame.sort_values(list(ORDER), kind="mergesort").reset_index(drop=True)
    n = len(ordered)
    n_holdout = round(n * holdout_fraction)
    n_validation = round(n * validation_fraction)
    n_train = n - n_holdout - n_validation
    splits = Splits(
        train=ordered.iloc[:n_train].reset_index(drop=True),
        validation=ordered.iloc[n_train : n_train + n_validation].reset_index(drop=True),
        holdout=ordered.iloc[n_train + n_validation :].reset_index(drop=True),
    )
    for name, part in (
        ("train", splits.train),
        ("validation", splits.validation),
        ("holdout", splits.holdout),
    ):
        require_both_classes(part, name)
    return splits


def require_both_classes(part: pd.DataFrame, name: str) -> None:
    """Fail clearly where metrics would otherwise come out as nan or a warning."""
    if len(part) < MIN_SPLIT_ROWS:
        raise InvalidInputError(
            f"{name} split has {len(part)} rows; need at least {MIN_SPLIT_ROWS} "
            "(too few rows in the snapshot for this split)"
        )
    y = labels(part)
    frauds = int(y.sum())
    if frauds == 0:
        raise InvalidInputError(
            f"{name} split ({len(part)} rows) has no fraud; every split needs at least one "
            "labelled fraud to train on or to measure"
        )
    if frauds == len(y):
        raise InvalidInputError(f"{name} split ({len(part)} rows) has only fraud")
