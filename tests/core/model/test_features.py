from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from app.core.errors import InvalidInputError
from app.core.model.features import FeatureVector, feature_matrix, feature_row, labels
from app.core.schema import MODEL_FEATURES


def test_feature_matrix_training_frame_returns_columns_in_model_feature_order(
    frame: pd.DataFrame,
) -> None:
    shuffled = frame[list(reversed(frame.columns))]

    x = feature_matrix(shuffled)

    assert x.shape == (5000, len(MODEL_FEATURES))
    assert x.dtype == np.float64
    assert np.array_equal(x[:, 0], frame["V1"].to_numpy())
    assert np.array_equal(x[:, MODEL_FEATURES.index("amount")], frame["amount"].to_numpy())


def test_feature_matrix_nullable_columns_become_nan(frame: pd.DataFrame) -> None:
    small = frame.head(3).copy()
    small["card_txn_count_1h"] = pd.array([1, None, 3], dtype="Int64")
    small["secs_since_prev_txn"] = [None, 5.0, None]

    x = feature_matrix(small)

    assert math.isnan(x[1, MODEL_FEATURES.index("card_txn_count_1h")])
    assert x[2, MODEL_FEATURES.index("card_txn_count_1h")] == 3.0
    assert np.isnan(x[:, MODEL_FEATURES.index("secs_since_prev_txn")]).tolist() == [
        True,
        False,
        True,
    ]


def test_feature_matrix_missing_column_raises_invalid_input_naming_it(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="V14, amount"):
        feature_matrix(frame.drop(columns=["V14", "amount"]))


def test_labels_non_binary_value_raises_invalid_input(frame: pd.DataFrame) -> None:
    bad = frame.head(4).assign(label=[0, 1, 2, 0])

    with pytest.raises(InvalidInputError, match="must be 0 or 1"):
        labels(bad)


def test_feature_row_none_value_becomes_nan() -> None:
    features: dict[str, float | None] = {name: 1.5 for name in MODEL_FEATURES}
    features["secs_since_prev_txn"] = None
    features["not_a_feature"] = 9.0

    row = feature_row(features)

    assert row.shape == (1, len(MODEL_FEATURES))
    assert math.isnan(row[0, MODEL_FEATURES.index("secs_since_prev_txn")])
    assert row[0, 0] == 1.5


def test_feature_row_missing_feature_raises_invalid_input_naming_it() -> None:
    features: dict[str, float | None] = {name: 0.0 for name in MODEL_FEATURES if name != "V7"}

    with pytest.raises(InvalidInputError, match="missing feature 'V7'") as caught:
        feature_row(features)

    assert caught.value.location == "V7"


def test_feature_row_text_value_raises_invalid_input() -> None:
    features: dict[str, object] = {name: 0.0 for name in MODEL_FEATURES}
    features["amount"] = "12.50"

    with pytest.raises(InvalidInputError, match="'amount' must be a number"):
        feature_row(features)  # type: ignore[arg-type]


def _vector_values() -> np.ndarray:
    values = np.arange(len(MODEL_FEATURES), dtype=np.float64) / 4
    values[MODEL_FEATURES.index("secs_since_prev_txn")] = np.nan
    return values


def test_feature_vector_reads_as_a_mapping_with_none_for_missing() -> None:
    vector = FeatureVector(_vector_values())

    assert list(vector) == list(MODEL_FEATURES)
    assert len(vector) == len(MODEL_FEATURES)
    assert vector["V2"] == 0.25
    assert vector["secs_since_prev_txn"] is None
    assert "other" not in vector
    assert dict(vector) == {
        name: (None if name == "secs_since_prev_txn" else i / 4)
        for i, name in enumerate(MODEL_FEATURES)
    }


def test_feature_vector_from_bytes_shares_the_buffer_read_only() -> None:
    data = b"head" + _vector_values().astype("<f8").tobytes()
    vector = FeatureVector.from_bytes(data, 4)

    assert vector["V3"] == 0.5
    with pytest.raises(ValueError, match="read-only"):
        vector.matrix[0, 0] = 1.0


def test_feature_vector_wrong_shape_raises_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="float64 values"):
        FeatureVector(np.zeros(3))


def test_feature_row_of_a_feature_vector_is_its_matrix_as_the_mapping_path_gives() -> None:
    vector = FeatureVector(_vector_values())

    row = feature_row(vector)

    assert row is vector.matrix
    np.testing.assert_array_equal(row, feature_row(dict(vector)))


def test_feature_row_of_a_feature_vector_with_infinity_raises_naming_it() -> None:
    values = _vector_values()
    values[MODEL_FEATURES.index("amount")] = np.inf

    with pytest.raises(InvalidInputError, match="'amount' is infinite"):
        feature_row(FeatureVector(values))
