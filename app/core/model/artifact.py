"""The saved model: a directory with LightGBM's text model and a JSON manifest.

The manifest pins the feature order the booster was trained on; loading refuses a
model whose features are not today's ``MODEL_FEATURES``, since scoring it would
silently feed columns into the wrong slots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from app.core.errors import InvalidInputError, NotFoundError
from app.core.model.features import feature_matrix
from app.core.schema import MODEL_FEATURES

MODEL_FILE = "model.txt"
MANIFEST_FILE = "model.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FraudModel:
    booster: lgb.Booster
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Fraud scores for rows of ``x`` (columns in ``MODEL_FEATURES`` order)."""
        return np.asarray(self.booster.predict(x), dtype=np.float64)

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
