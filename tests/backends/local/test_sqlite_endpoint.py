from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.backends.local.sqlite_endpoint import SQLiteModelEndpoint
from app.backends.local.sqlite_registry import SQLiteModelRegistry
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.model.artifact import MODEL_FILE, load_model
from app.core.model.features import feature_row
from app.core.records import ModelVersion
from app.core.schema import MODEL_FEATURES
from tests.support.synthetic import synthetic_training_frame


def _features(row: int = 0) -> dict[str, float | None]:
    frame = synthetic_training_frame(50, seed=21)
    return {name: float(frame[name].iloc[row]) for name in MODEL_FEATURES}


def _register(registry: SQLiteModelRegistry, model_dir: Path, threshold: float) -> ModelVersion:
    return registry.register(
        artifact_path=model_dir,
        snapshot_id="snap-1",
        threshold=threshold,
        metrics={"auprc": 0.9},
        params={},
    )


def test_deployed_fresh_registry_returns_none(endpoint: SQLiteModelEndpoint) -> None:
    assert endpoint.deployed() is None


def test_predict_with_nothing_deployed_raises_backend_unavailable(
    endpoint: SQLiteModelEndpoint,
) -> None:
    with pytest.raises(BackendUnavailableError, match="no model is deployed"):
        endpoint.predict(_features())


def test_predict_after_deploy_scores_with_that_version_and_its_threshold(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    version = _register(registry, model_dirs[0], threshold=0.37)
    endpoint.deploy(version)
    expected = load_model(model_dirs[0]).predict(feature_row(_features()))[0]

    prediction = endpoint.predict(_features())

    assert prediction.model_version == "v0001"
    assert prediction.threshold == 0.37
    assert prediction.probability == pytest.approx(expected)
    assert endpoint.deployed() == version


def test_predict_pointer_switched_by_another_instance_uses_the_new_model(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    first = _register(registry, model_dirs[0], threshold=0.3)
    second = _register(registry, model_dirs[1], threshold=0.6)
    endpoint.deploy(first)
    before = endpoint.predict(_features())

    SQLiteModelEndpoint(endpoint.db_path, endpoint.registry).deploy(second)
    after = endpoint.predict(_features())

    expected = load_model(model_dirs[1]).predict(feature_row(_features()))[0]
    assert (before.model_version, after.model_version) == ("v0001", "v0002")
    assert after.threshold == 0.6
    assert after.probability == pytest.approx(expected)
    assert after.probability != pytest.approx(before.probability)


def test_deploy_records_history_with_previous_version_and_ordered_timestamps(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    first = _register(registry, model_dirs[0], threshold=0.3)
    second = _register(registry, model_dirs[1], threshold=0.6)

    for version in (first, second, first):
        endpoint.deploy(version)

    history = endpoint.history()
    assert [(h.version, h.previous) for h in history] == [
        ("v0001", None),
        ("v0002", "v0001"),
        ("v0001", "v0002"),
    ]
    assert [h.deployed_at for h in history] == sorted(h.deployed_at for h in history)
    assert endpoint.deployed() == first


def test_deploy_unregistered_version_raises_not_found_and_keeps_pointer(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    live = _register(registry, model_dirs[0], threshold=0.3)
    endpoint.deploy(live)
    stranger = ModelVersion("v0099", "snap-9", "/nowhere", 0.5, {})

    with pytest.raises(NotFoundError, match="'v0099' is not registered"):
        endpoint.deploy(stranger)

    assert endpoint.deployed() == live
    assert len(endpoint.history()) == 1


def test_deploy_version_with_corrupt_artifact_raises_backend_unavailable_and_keeps_pointer(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    live = _register(registry, model_dirs[0], threshold=0.3)
    broken = _register(registry, model_dirs[1], threshold=0.6)
    endpoint.deploy(live)
    (Path(broken.artifact_uri) / MODEL_FILE).write_text("garbage")

    with pytest.raises(BackendUnavailableError, match="v0002 .* cannot be loaded"):
        endpoint.deploy(broken)

    assert endpoint.deployed() == live
    assert endpoint.predict(_features()).model_version == "v0001"


def test_predict_deployed_artifact_deleted_raises_backend_unavailable(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    version = _register(registry, model_dirs[0], threshold=0.3)
    endpoint.deploy(version)
    shutil.rmtree(version.artifact_uri)

    with pytest.raises(BackendUnavailableError, match="v0001 .* cannot be loaded"):
        SQLiteModelEndpoint(endpoint.db_path, endpoint.registry).predict(_features())


def test_predict_missing_feature_raises_invalid_input_naming_it(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    endpoint.deploy(_register(registry, model_dirs[0], threshold=0.3))
    features = _features()
    del features["card_amount_zscore_24h"]

    with pytest.raises(InvalidInputError, match="missing feature 'card_amount_zscore_24h'"):
        endpoint.predict(features)


def test_predict_null_feature_is_scored_as_missing(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    endpoint.deploy(_register(registry, model_dirs[0], threshold=0.3))
    features = _features()
    features["secs_since_prev_txn"] = None

    prediction = endpoint.predict(features)

    assert 0.0 <= prediction.probability <= 1.0
