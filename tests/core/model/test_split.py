from __future__ import annotations

import pandas as pd
import pytest

from app.core.errors import InvalidInputError
from app.core.model.split import time_split
from tests.support.synthetic import synthetic_training_frame


def test_time_split_default_fractions_gives_time_ordered_disjoint_parts(
    frame: pd.DataFrame,
) -> None:
    shuffled = frame.sample(frac=1.0, random_state=3)

    splits = time_split(shuffled, holdout_fraction=0.2, validation_fraction=0.2)

    assert (len(splits.train), len(splits.validation), len(splits.holdout)) == (3000, 1000, 1000)
    assert splits.train["event_time"].max() <= splits.validation["event_time"].min()
    assert splits.validation["event_time"].max() <= splits.holdout["event_time"].min()
    all_ids = pd.concat([splits.train.txn_id, splits.validation.txn_id, splits.holdout.txn_id])
    assert all_ids.is_unique and len(all_ids) == 5000


def test_time_split_equal_event_times_ordered_by_txn_id() -> None:
    frame = synthetic_training_frame(100, fraud_rate=0.3, seed=4).assign(event_time=1.0)

    splits = time_split(frame, holdout_fraction=0.2, validation_fraction=0.2)

    assert splits.holdout["txn_id"].tolist() == sorted(frame["txn_id"])[-20:]


def test_time_split_holdout_without_fraud_raises_invalid_input(frame: pd.DataFrame) -> None:
    late = frame["event_time"] >= frame["event_time"].quantile(0.75)
    no_late_fraud = frame.assign(label=frame["label"].where(~late, 0))

    with pytest.raises(InvalidInputError, match="holdout split .* has no fraud"):
        time_split(no_late_fraud, holdout_fraction=0.2, validation_fraction=0.2)


def test_time_split_too_few_rows_raises_invalid_input() -> None:
    frame = synthetic_training_frame(60, fraud_rate=0.3, seed=5)

    with pytest.raises(InvalidInputError, match="validation split has 12 rows; need at least 20"):
        time_split(frame, holdout_fraction=0.2, validation_fraction=0.2)


def test_time_split_fractions_leaving_no_training_rows_raise_invalid_input(
    frame: pd.DataFrame,
) -> None:
    with pytest.raises(InvalidInputError, match="leave rows to train on"):
        time_split(frame, holdout_fraction=0.5, validation_fraction=0.5)
