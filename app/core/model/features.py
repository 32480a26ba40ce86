"""Turning rows into the model's input: always the columns of ``MODEL_FEATURES``, in order."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from app.core.errors import InvalidInputError
from app.core.schema import MODEL_FEATURES

LABEL = "label"
_POSITION = {name: i for i, name in enumerate(MODEL_FEATURES)}


class FeatureVector(Mapping[str, float | None]):
    """One card's model features as a float64 row in ``MODEL_FEATURES`` order (NaN:
    missing), read as a mapping of name to number or None.

    What the online store hands the endpoint: :func:`feature_row` takes its row as it
    is, instead of validating 35 values one by one, and nothing builds a dict on the
    scoring path.
    """

    __slots__ = ("matrix",)

    def __init__(self, values: np.ndarray) -> None:
        if values.dtype != np.float64 or values.shape not in (
            (len(MODEL_FEATURES),),
            (1, len(MODEL_FEATURES)),
        ):
            raise InvalidInputError(
                f"a feature vector holds {len(MODEL_FEATURES)} float64 values, "
                f"not {values.shape} {values.dtype}"
            )
        matrix = values.reshape(1, len(MODEL_FEATURES))
        # Shared with whoever reads it: nobody may change a card's features in place.
        matrix.flags.writeable = False
        self.matrix = matrix

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> FeatureVector:
        """The vector of ``MODEL_FEATURES`` float64 values (little-endian) in ``data``
        from ``offset``, without a copy: the online store's decode, per request."""
        vector = object.__new__(cls)
        # bytes are immutable, so the array is read-only as it should be.
        vector.matrix = np.ndarray(
            shape=(1, len(MODEL_FEATURES)), dtype="<f8", buffer=data, offset=offset
        )
        return vector

    def __getitem__(self, name: str) -> float | None:
        value = float(self.matrix[0, _POSITION[name]])
        return None if math.isnan(value) else value

    def __iter__(self) -> Iterator[str]:
        return iter(MODEL_FEATURES)

    def __len__(self) -> int:
        return len(MODEL_FEATURES)

    def __repr__(self) -> str:
        return f"FeatureVector({dict(self)!r})"


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    """``frame``'s model features as float64, missing values (NULL, NA) as NaN."""
    missing = [name for name in MODEL_FEATURES if name not in frame.columns]
    if missing:
        raise InvalidInputError(f"frame lacks model feature columns: {', '.join(missing)}")
    try:
        columns = [
            pd.to_numeric(frame[name]).to_numpy(dtype=np.float64, na_value=np.nan)
            for name in MODEL_FEATURES
        ]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"non-numeric model feature value: {exc}") from exc
    if not columns or len(frame) == 0:
        return np.empty((0, len(MODEL_FEATURES)), dtype=np.float64)
    return np.column_stack(columns)


def labels(frame: pd.DataFrame) -> np.ndarray:
    """``frame``'s ``label`` column as int64; every row must be 0 or 1."""
    if LABEL not in frame.columns:
        raise InvalidInputError(f"frame has no {LABEL!r} column")
    column = frame[LABEL]
    if column.isna().any():
        raise InvalidInputError(f"{int(column.isna().sum())} rows have no {LABEL!r}")
    values = column.to_numpy().astype(np.int64)
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        raise InvalidInputError(f"{LABEL!r} must be 0 or 1; found {sorted(set(values[bad]))[:5]}")
    return values


def feature_row(features: Mapping[str, float | None]) -> np.ndarray:
    """One request's features as a 1 x n matrix; None is missing (NaN), extra keys are ignored.

    A :class:`FeatureVector` is already that matrix (read-only): only infinities are
    looked for.
    """
    if type(features) is FeatureVector:
        matrix = features.matrix
        if np.isinf(matrix).any():
            name = MODEL_FEATURES[int(np.flatnonzero(np.isinf(matrix[0]))[0])]
            raise InvalidInputError(f"feature {name!r} is infinite", location=name)
        return matrix
    row = np.empty((1, len(MODEL_FEATURES)), dtype=np.float64)
    for i, name in enumerate(MODEL_FEATURES):
        if name not in features:
            raise InvalidInputError(f"missing feature {name!r}", location=name)
        value = features[name]
        if value is None:
            row[0, i] = np.nan
            continue
        # bool is an int subclass; a True here is a caller's bug, not a 1.0.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(
                f"feature {name!r} must be a number or null, got {type(value).__name__}",
                location=name,
            )
        if math.isinf(value):
            raise InvalidInputError(f"feature {name!r} is infinite", location=name)
        row[0, i] = float(value)
    return row
