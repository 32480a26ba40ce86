from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import InvalidInputError, NotFoundError
from app.core.model.artifact import MANIFEST_FILE, MODEL_FILE, FraudModel, load_model, save_model
from app.core.model.split import Splits
from app.core.schema import MODEL_FEATURES


def test_save_then_load_model_gives_same_scores_and_threshold(
    tmp_path: Path, splits: Splits, trained: FraudModel
) -> None:
    directory = save_model(trained, tmp_path / "model")

    loaded = load_model(directory)

    assert sorted(p.name for p in directory.iterdir()) == [MANIFEST_FILE, MODEL_FILE]
    assert loaded.threshold == trained.threshold
    assert loaded.params["best_iteration"] == trained.params["best_iteration"]
    assert np.allclose(loaded.score_frame(splits.holdout), trained.score_frame(splits.holdout))


def test_load_model_other_feature_names_raises_invalid_input(
    tmp_path: Path, trained: FraudModel
) -> None:
    directory = save_model(trained, tmp_path / "model")
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["feature_names"] = [*MODEL_FEATURES[:-1], "card_country"]
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.raises(InvalidInputError, match=r"missing \['secs_since_prev_txn'\], unexpected"):
        load_model(directory)


def test_load_model_missing_directory_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no model manifest"):
        load_model(tmp_path / "nowhere")


def test_load_model_corrupt_model_file_raises_invalid_input(
    tmp_path: Path, trained: FraudModel
) -> None:
    directory = save_model(trained, tmp_path / "model")
    (directory / MODEL_FILE).write_text("not a lightgbm model\n")

    with pytest.raises(InvalidInputError, match="unreadable LightGBM model"):
        load_model(directory)
