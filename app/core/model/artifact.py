"""The saved model: a directory with LightGBM's text model and a JSON manifest.

The manifest pins the feature order the booster was trained on; loading refuses a
model whose features are not today's ``MODEL_FEATURES``, since scoring it would
silently feed columns into the wrong slots.
"""

from __future__ import annotations

import ctypes
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm import basic as _lgb_basic

from app.core.errors import InvalidInputError, NotFoundError
from app.core.model.features import feature_matrix
from app.core.schema import MODEL_FEATURES

MODEL_FILE = "model.txt"
MANIFEST_FILE = "model.json"
FORMAT_VERSION = 1


# LightGBM's C API for one row at a time (``c_api.h``): set up once, then each call is
# one tree walk, without ``Booster.predict``'s per-call setup (a new predictor, shape
# checks, the output size asked of the library), which costs ~100 us for a single row.
_LIB = _lgb_basic._LIB
_FAST_INIT = getattr(_LIB, "LGBM_BoosterPredictForMatSingleRowFastInit", None)
_FAST_PREDICT = getattr(_LIB, "LGBM_BoosterPredictForMatSingleRowFast", None)
_FAST_FREE = getattr(_LIB, "LGBM_FastConfigFree", None)
_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL: probabilities, as Booster.predict gives
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class _RowPredictor:
    """One booster's single-row fast path for one thread, with its own buffers.

    Per thread: the buffers are written on each call, and the library recommends a
    FastConfig per thread. It runs the predictor ``Booster.predict`` runs (same trees,
    same iterations, same missing-value handling), so the score is the same number.
    """

    __slots__ = ("_booster", "_handle", "_input", "_input_view", "_out", "_out_len")

    def __init__(self, booster: lgb.Booster, n_features: int) -> None:
        assert _FAST_INIT is not None and _FAST_PREDICT is not None
        self._booster = booster  # the handle points into it: keep it alive as long
        self._handle = ctypes.c_void_p()
        # As Booster.predict(num_iteration=None) picks them: the best iteration if the
        # booster knows one (-1: all), from the first.
        num_iteration = booster.best_iteration
        _lgb_basic._safe_call(
            _FAST_INIT(
                booster._handle,
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b""),
                ctypes.byref(self._handle),
            )
        )
        self._input = (ctypes.c_double * n_features)()
        self._input_view = np.frombuffer(memoryview(self._input), dtype=np.float64)
        self._out = (ctypes.c_double * max(1, booster.num_model_per_iteration()))()
        self._out_len = ctypes.c_int64(0)

    def __call__(self, row: np.ndarray) -> float:
        try:
            self._input_view[:] = row
        except ValueError as exc:
            raise InvalidInputError(
                f"a row holds {len(self._input_view)} values, not {np.shape(row)}"
            ) from exc
        assert _FAST_PREDICT is not None
        _lgb_basic._safe_call(
            _FAST_PREDICT(self._handle, self._input, ctypes.byref(self._out_len), self._out)
        )
        return float(self._out[0])

    def __del__(self) -> None:
        if _FAST_FREE is not None and self._handle:
            _FAST_FREE(self._handle)


@dataclass(frozen=True)
class FraudModel:
    booster: lgb.Booster
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)
    # Each thread's single-row predictor, made on its first predict_one.
    _rows: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Fraud scores for rows of ``x`` (columns in ``MODEL_FEATURES`` order)."""
        return np.asarray(self.booster.predict(x), dtype=np.float64)

    def predict_one(self, row: np.ndarray) -> float:
        """The fraud score of one row (``MODEL_FEATURES`` order, float64, shape (n,) or
        (1, n)): the number :meth:`predict` gives for it, in a few microseconds."""
        predictor: _RowPredictor | None = getattr(self._rows, "predictor", None)
        if predictor is None:
            predictor = self.warm()
            if predictor is None:
                # A LightGBM without the single-row API: the general path still scores.
                return float(self.predict(np.asarray(row, dtype=np.float64).reshape(1, -1))[0])
        return predictor(row)

    def warm(self) -> _RowPredictor | None:
        """Set up this thread's single-row path now (the first predict_one would)."""
        predictor: _RowPredictor | None = getattr(self._rows, "predictor", None)
        if predictor is None and _FAST_INIT is not None and _FAST_PREDICT is not None:
            predictor = _RowPredictor(self.booster, len(MODEL_FEATURES))
            self._rows.predictor = predictor
        return predictor

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict(feature_matrix(frame))


def save_model(model: FraudModel, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    # With early stopping this saves the best iteration, not the last one.
    model.booster.save_model(str(directory / MODEL_FILE))
    manifest = {
        "format_version": FORMAT_VERSION,
        "feature_names": list(MODEL_FEATURES),
        "threshold": model.threshold,
        "params": model.params,
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise NotFoundError(f"no model manifest at {path}") from exc
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"unreadable model manifest: {exc}", location=str(path)) from exc
    if not isinstance(manifest, dict):
        raise InvalidInputError("model manifest is not a JSON object", location=str(path))
    return manifest


def load_model(directory: Path) -> FraudModel:
    manifest = read_manifest(directory)
    _check_features(manifest.get("feature_names"), source=str(directory / MANIFEST_FILE))
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise NotFoundError(f"no model file at {model_path}")
    try:
        booster = lgb.Booster(model_file=str(model_path))
    except lgb.basic.LightGBMError as exc:
        raise InvalidInputError(
            f"unreadable LightGBM model: {exc}", location=str(model_path)
        ) from exc
    _check_features(booster.feature_name(), source=str(model_path))
    try:
        threshold = float(manifest["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            "model manifest has no numeric threshold", location=str(directory / MANIFEST_FILE)
        ) from exc
    return FraudModel(booster=booster, threshold=threshold, params=dict(manifest.get("params", {})))


def _check_features(names: object, *, source: str) -> None:
    if names == list(MODEL_FEATURES):
        return
    if not isinstance(names, list):
        raise InvalidInputError("model does not list its feature names", location=source)
    missing = [n for n in MODEL_FEATURES if n not in names]
    extra = [n for n in names if n not in MODEL_FEATURES]
    detail = (
        f"missing {missing}, unexpected {extra}"
        if missing or extra
        else "same names in a different order"
    )
    raise InvalidInputError(
        f"model features do not match MODEL_FEATURES ({detail}); retrain it on this schema",
        location=source,
    )
