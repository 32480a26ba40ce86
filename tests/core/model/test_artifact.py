from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import InvalidInputError, NotFoundError
from app.core.model.artifact import MANIFEST_FILE, MODEL_FILE, FraudModel, load_model, save_model
from app.core.model.features import feature_matrix
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


def test_predict_one_many_rows_equals_predict_exactly(
    tmp_path: Path, splits: Splits, trained: FraudModel
) -> None:
    loaded = load_model(save_model(trained, tmp_path / "model"))
    x = feature_matrix(splits.holdout)
    x[::5, MODEL_FEATURES.index("secs_since_prev_txn")] = np.nan
    x[::7, 0] = 0.0  # zeros take LightGBM's sparse path: the same on both
    batch = loaded.predict(x)

    one_by_one = np.array([loaded.predict_one(row) for row in x])
    as_matrix = np.array([loaded.predict_one(x[i : i + 1]) for i in range(len(x))])

    assert len(x) >= 500
    assert np.array_equal(one_by_one, batch)
    assert np.array_equal(as_matrix, batch)
    assert np.array_equal(batch, loaded.booster.predict(x))


def test_predict_one_on_several_threads_gives_each_the_same_scores(
    splits: Splits, trained: FraudModel
) -> None:
    x = feature_matrix(splits.holdout)[:200]
    expected = trained.predict(x)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: [trained.predict_one(r) for r in x], range(8)))

    assert all(np.array_equal(np.array(r), expected) for r in results)


def test_predict_one_wrong_width_raises_invalid_input(trained: FraudModel) -> None:
    with pytest.raises(InvalidInputError, match="values"):
        trained.predict_one(np.zeros(len(MODEL_FEATURES) - 1))
