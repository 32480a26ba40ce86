from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from app.backends.local import sqlite_endpoint
from app.backends.local.sqlite_endpoint import SQLiteModelEndpoint
from app.backends.local.sqlite_registry import SQLiteModelRegistry
from app.core import cards
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from app.core.model.artifact import MODEL_FILE, FraudModel, load_model
from app.core.model.features import FeatureVector, feature_row
from app.core.records import ModelVersion, traffic_bucket
from app.core.schema import MODEL_FEATURES
from tests.support.synthetic import synthetic_training_frame

KEY = b"k" * 32
CARD = "card-1"


def _features(row: int = 0) -> dict[str, float | None]:
    frame = synthetic_training_frame(50, seed=21)
    return {name: float(frame[name].iloc[row]) for name in MODEL_FEATURES}


def _register(registry: SQLiteModelRegistry, model_dir: Path, threshold: float) -> ModelVersion:
    return registry.register(
        artifact_path=model_dir,
        snapshot_id="snap-1",
        run_name=f"run-{uuid.uuid4().hex[:8]}",
        threshold=threshold,
        metrics={"auprc": 0.9},
        params={},
    )


def _card_ids(count: int) -> list[str]:
    """Routing keys as the scorer passes them: cards' HMAC ids."""
    return [cards.card_id(cards.make_card_number(i), KEY) for i in range(count)]


def _canary(endpoint: SQLiteModelEndpoint, percent: int) -> SQLiteModelEndpoint:
    return SQLiteModelEndpoint(endpoint.db_path, endpoint.registry, canary_traffic_percent=percent)


def _deploy_in_turn(serving: SQLiteModelEndpoint, *in_turn: ModelVersion) -> SQLiteModelEndpoint:
    """Deploys each version at `serving`'s canary share, expecting the one before as champion.

    The first goes over nothing. Past the second, right only for full deploys: over a canary
    the champion is still the first.
    """
    previous: str | None = None
    for version in in_turn:
        serving.deploy(version, expected_champion=previous)
        previous = version.version
    return serving


class Split(NamedTuple):
    champion: ModelVersion
    canary: ModelVersion


@pytest.fixture
def versions(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> tuple[ModelVersion, ModelVersion, ModelVersion]:
    return (
        _register(registry, model_dirs[0], threshold=0.3),
        _register(registry, model_dirs[1], threshold=0.6),
        _register(registry, model_dirs[0], threshold=0.45),
    )


@pytest.fixture
def canary_at_10(endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]) -> Split:
    """v0001 deployed as the champion, then v0002 as a canary on 10% of the traffic."""
    first, second, _ = versions
    _deploy_in_turn(_canary(endpoint, 10), first, second)
    return Split(first, second)


@pytest.fixture
def champion(endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]) -> ModelVersion:
    """v0001 deployed over nothing: all traffic on it."""
    endpoint.deploy(versions[0], expected_champion=None)
    return versions[0]


def test_deployed_fresh_registry_returns_none(endpoint: SQLiteModelEndpoint) -> None:
    assert endpoint.deployed() is None
    assert endpoint.traffic() == {}


def test_predict_with_nothing_deployed_raises_backend_unavailable(
    endpoint: SQLiteModelEndpoint,
) -> None:
    with pytest.raises(BackendUnavailableError, match="no model is deployed"):
        endpoint.predict(_features(), routing_key=CARD)


def test_warm_nothing_deployed_raises_backend_unavailable(endpoint: SQLiteModelEndpoint) -> None:
    with pytest.raises(BackendUnavailableError, match="no model is deployed"):
        endpoint.warm()


def test_predict_after_deploy_scores_with_that_version_and_its_threshold(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    version = _register(registry, model_dirs[0], threshold=0.37)
    assert endpoint.deploy(version, expected_champion=None) == {"v0001": 100}
    expected = load_model(model_dirs[0]).predict(feature_row(_features()))[0]

    prediction = endpoint.predict(_features(), routing_key=CARD)

    assert prediction.model_version == "v0001"
    assert prediction.threshold == 0.37
    assert prediction.probability == pytest.approx(expected)
    assert endpoint.deployed() == version


def test_predict_split_switched_by_another_instance_uses_the_new_model(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...], model_dirs: tuple[Path, Path]
) -> None:
    first, second, _ = versions
    endpoint.deploy(first, expected_champion=None)
    before = endpoint.predict(_features(), routing_key=CARD)

    SQLiteModelEndpoint(endpoint.db_path, endpoint.registry).deploy(
        second, expected_champion="v0001"
    )
    after = endpoint.predict(_features(), routing_key=CARD)

    expected = load_model(model_dirs[1]).predict(feature_row(_features()))[0]
    assert (before.model_version, after.model_version) == ("v0001", "v0002")
    assert after.threshold == 0.6
    assert after.probability == pytest.approx(expected)
    assert after.probability != pytest.approx(before.probability)


def test_deploy_default_config_replaces_the_champion_and_records_history(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    first, second, _ = versions

    _deploy_in_turn(endpoint, first, second, first)

    history = endpoint.history()
    assert [(h.version, h.previous, h.action, h.percent) for h in history] == [
        ("v0001", None, "deploy", 100),
        ("v0002", "v0001", "deploy", 100),
        ("v0001", "v0002", "deploy", 100),
    ]
    assert [h.deployed_at for h in history] == sorted(h.deployed_at for h in history)
    assert endpoint.deployed() == first
    assert endpoint.traffic() == {"v0001": 100}


def test_deploy_canary_share_100_means_all_traffic(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    full = _canary(endpoint, 100)
    full.deploy(versions[0], expected_champion=None)

    assert full.deploy(versions[1], expected_champion="v0001") == {"v0002": 100}
    assert full.traffic() == {"v0002": 100}


def test_deploy_first_version_with_a_canary_share_takes_all_traffic(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    # With no champion there is nothing to compare a canary against.
    assert _canary(endpoint, 20).deploy(versions[0], expected_champion=None) == {"v0001": 100}


def test_deploy_at_canary_share_keeps_the_champion_for_the_rest(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    canary = _canary(endpoint, 20)
    canary.deploy(versions[0], expected_champion=None)

    split = canary.deploy(versions[1], expected_champion="v0001")

    assert split == {"v0001": 80, "v0002": 20}
    assert list(canary.traffic()) == ["v0001", "v0002"]  # champion first
    assert canary.deployed() == versions[0]
    assert endpoint.traffic() == split  # the split is the file's, not the instance's
    assert (endpoint.history()[-1].action, endpoint.history()[-1].percent) == ("canary", 20)


def test_predict_during_canary_routes_keys_by_hash_within_3_percent_and_sticks(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...], model_dirs: tuple[Path, Path]
) -> None:
    canary = _deploy_in_turn(_canary(endpoint, 20), versions[0], versions[1])
    features = _features()
    expected = {
        "v0001": (load_model(model_dirs[0]).predict(feature_row(features))[0], 0.3),
        "v0002": (load_model(model_dirs[1]).predict(feature_row(features))[0], 0.6),
    }
    keys = _card_ids(10_000)

    first = {k: canary.predict(features, routing_key=k) for k in keys}

    counts = Counter(p.model_version for p in first.values())
    assert abs(counts["v0002"] / len(keys) - 0.20) <= 0.03
    assert counts["v0001"] + counts["v0002"] == len(keys)
    for key, prediction in first.items():
        # Each response is wholly one version's: its model's score and its threshold.
        probability, threshold = expected[prediction.model_version]
        assert prediction.probability == pytest.approx(probability)
        assert prediction.threshold == threshold
        assert (prediction.model_version == "v0002") == (traffic_bucket(key) < 20)
    # Another instance (another process, in production) routes every key the same way.
    again = SQLiteModelEndpoint(endpoint.db_path, endpoint.registry)
    for key in keys[:1000]:
        assert again.predict(features, routing_key=key).model_version == (first[key].model_version)


def test_deploy_stale_expected_champion_raises_conflict_and_changes_nothing(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    first, second, third = versions
    _deploy_in_turn(endpoint, first, second)  # another run promoted v0002 meanwhile
    before = (endpoint.traffic(), endpoint.history())

    with pytest.raises(ConflictError, match="champion is v0002, not v0001"):
        endpoint.deploy(third, expected_champion="v0001")
    with pytest.raises(ConflictError, match="champion is v0002, not nothing"):
        endpoint.deploy(third, expected_champion=None)
    with pytest.raises(ConflictError):
        _canary(endpoint, 20).deploy(third, expected_champion="v0001")

    assert (endpoint.traffic(), endpoint.history()) == before


@pytest.mark.parametrize(
    ("percent", "split"), [(0, {"v0002": 100}), (20, {"v0001": 80, "v0002": 20})]
)
def test_deploy_retried_after_it_succeeded_changes_nothing(
    endpoint: SQLiteModelEndpoint,
    versions: tuple[ModelVersion, ...],
    percent: int,
    split: dict[str, int],
) -> None:
    first, second, _ = versions
    serving = _deploy_in_turn(_canary(endpoint, percent), first, second)
    history = endpoint.history()

    # The retried step carries the gate's expectation, stale once a full deploy landed.
    assert serving.deploy(second, expected_champion="v0001") == split
    assert endpoint.history() == history


def _deploy_in_child(db_path: Path, registry_path: Path, artifacts: Path, version: str) -> str:
    registry = SQLiteModelRegistry(registry_path, artifacts)
    endpoint = SQLiteModelEndpoint(db_path, registry)
    try:
        endpoint.deploy(registry.get(version), expected_champion="v0001")
    except ConflictError:
        return "conflict"
    return "deployed"


def test_deploy_two_runs_at_once_against_the_same_champion_only_one_promotes(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    registry = endpoint.registry
    assert isinstance(registry, SQLiteModelRegistry)
    endpoint.deploy(versions[0], expected_champion=None)
    args = (endpoint.db_path, registry.db_path, registry.artifacts_dir)

    # Spawned, not forked: a child forked after LightGBM's OpenMP threads ran can hang.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        futures = [pool.submit(_deploy_in_child, *args, v) for v in ("v0002", "v0003")]
        outcomes = [f.result() for f in futures]

    assert sorted(outcomes) == ["conflict", "deployed"]
    winner = "v0002" if outcomes[0] == "deployed" else "v0003"
    assert endpoint.traffic() == {winner: 100}
    assert [h.version for h in endpoint.history()] == ["v0001", winner]


def test_deploy_a_new_canary_undeploys_the_one_it_replaces(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    first, second, third = versions
    canary = _deploy_in_turn(_canary(endpoint, 25), first, second)
    for key in _card_ids(50):  # load both serving versions into memory
        canary.predict(_features(), routing_key=key)

    split = canary.deploy(third, expected_champion="v0001")

    assert split == {"v0001": 75, "v0003": 25}
    served = {canary.predict(_features(), routing_key=k).model_version for k in _card_ids(200)}
    assert served == {"v0001", "v0003"}
    # Only the two versions of the split stay loaded.
    assert set(canary._loaded) == {"v0001", "v0003"}


def test_deploy_full_over_a_canary_leaves_only_the_new_version(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    first, second, third = versions
    _canary(endpoint, 25).deploy(first, expected_champion=None)
    _canary(endpoint, 25).deploy(second, expected_champion="v0001")

    assert endpoint.deploy(third, expected_champion="v0001") == {"v0003": 100}


def test_promote_gives_the_canary_all_traffic_as_champion(
    endpoint: SQLiteModelEndpoint, canary_at_10: Split
) -> None:
    assert endpoint.promote() == {"v0002": 100}

    assert endpoint.deployed() == canary_at_10.canary
    assert {endpoint.predict(_features(), routing_key=k).model_version for k in _card_ids(50)} == {
        "v0002"
    }
    last = endpoint.history()[-1]
    assert (last.version, last.previous, last.action, last.percent) == (
        "v0002",
        "v0001",
        "promote",
        100,
    )


def test_promote_without_a_canary_raises_conflict_and_changes_nothing(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    with pytest.raises(ConflictError, match="no canary to promote"):
        endpoint.promote()
    endpoint.deploy(versions[0], expected_champion=None)

    with pytest.raises(ConflictError, match="no canary to promote; v0001 has all traffic"):
        endpoint.promote()

    assert endpoint.traffic() == {"v0001": 100}
    assert len(endpoint.history()) == 1


def test_rollback_with_a_canary_drops_it(
    endpoint: SQLiteModelEndpoint, canary_at_10: Split
) -> None:
    assert endpoint.rollback() == {"v0001": 100}

    assert endpoint.deployed() == canary_at_10.champion
    last = endpoint.history()[-1]
    assert (last.version, last.previous, last.action) == ("v0001", "v0002", "rollback")


def test_rollback_without_a_canary_redeploys_the_version_the_champion_replaced(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...], model_dirs: tuple[Path, Path]
) -> None:
    first, second, _ = versions
    _deploy_in_turn(_canary(endpoint, 10), first, second).promote()

    assert endpoint.rollback() == {"v0001": 100}

    prediction = endpoint.predict(_features(), routing_key=CARD)
    assert (prediction.model_version, prediction.threshold) == ("v0001", 0.3)
    expected = load_model(model_dirs[0]).predict(feature_row(_features()))[0]
    assert prediction.probability == pytest.approx(expected)


def test_rollback_repeated_walks_back_the_history_then_raises_conflict(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    first, second, third = versions
    _deploy_in_turn(endpoint, first, second, third)

    # Back along the chain of replacements, not to and fro between the last two.
    assert endpoint.rollback() == {"v0002": 100}
    assert endpoint.rollback() == {"v0001": 100}
    before = endpoint.history()
    with pytest.raises(ConflictError, match="v0001 was the first version deployed"):
        endpoint.rollback()

    assert endpoint.history() == before
    assert endpoint.traffic() == {"v0001": 100}


def test_rollback_with_nothing_deployed_raises_conflict(endpoint: SQLiteModelEndpoint) -> None:
    with pytest.raises(ConflictError, match="nothing is deployed"):
        endpoint.rollback()


def test_rollback_to_a_version_whose_artifact_is_gone_raises_and_keeps_the_champion(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    first, second, _ = versions
    _deploy_in_turn(endpoint, first, second)
    shutil.rmtree(first.artifact_uri)

    with pytest.raises(BackendUnavailableError, match="v0001 .* cannot be loaded"):
        SQLiteModelEndpoint(endpoint.db_path, endpoint.registry).rollback()

    assert endpoint.traffic() == {"v0002": 100}


def test_endpoint_file_from_before_canaries_keeps_its_version_and_history(
    tmp_path: Path, registry: SQLiteModelRegistry, versions: tuple[ModelVersion, ...]
) -> None:
    db = tmp_path / "old-endpoint.sqlite"
    with sqlite3.connect(db) as old:  # the schema as the one-version endpoint made it
        old.executescript(
            """
            CREATE TABLE deployment (
                slot TEXT PRIMARY KEY CHECK (slot = 'live'), version TEXT NOT NULL,
                deployed_at TEXT NOT NULL);
            CREATE TABLE deployment_history (
                id INTEGER PRIMARY KEY AUTOINCREMENT, version TEXT NOT NULL, previous TEXT,
                deployed_at TEXT NOT NULL);
            INSERT INTO deployment VALUES ('live', 'v0002', '2024-01-02');
            INSERT INTO deployment_history (version, previous, deployed_at)
                VALUES ('v0001', NULL, '2024-01-01'), ('v0002', 'v0001', '2024-01-02');
            """
        )

    endpoint = SQLiteModelEndpoint(db, registry, canary_traffic_percent=30)

    assert endpoint.traffic() == {"v0002": 100}
    assert [(h.action, h.percent) for h in endpoint.history()] == [("deploy", 100)] * 2
    assert endpoint.deploy(versions[2], expected_champion="v0002") == {"v0002": 70, "v0003": 30}
    assert endpoint.rollback() == {"v0002": 100}
    assert endpoint.rollback() == {"v0001": 100}  # from the history the old release kept


def test_endpoint_canary_share_out_of_range_raises_config_error(
    endpoint: SQLiteModelEndpoint,
) -> None:
    with pytest.raises(ConfigError, match="0..100, not 101"):
        _canary(endpoint, 101)


def test_deploy_unregistered_version_raises_not_found_and_keeps_split(
    endpoint: SQLiteModelEndpoint, champion: ModelVersion
) -> None:
    stranger = ModelVersion("v0099", "snap-9", "/nowhere", 0.5, {})

    with pytest.raises(NotFoundError, match="'v0099' is not registered"):
        endpoint.deploy(stranger, expected_champion="v0001")

    assert endpoint.deployed() == champion
    assert len(endpoint.history()) == 1


def test_deploy_version_with_corrupt_artifact_raises_backend_unavailable_and_keeps_split(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    live = _register(registry, model_dirs[0], threshold=0.3)
    broken = _register(registry, model_dirs[1], threshold=0.6)
    endpoint.deploy(live, expected_champion=None)
    (Path(broken.artifact_uri) / MODEL_FILE).write_text("garbage")

    with pytest.raises(BackendUnavailableError, match="v0002 .* cannot be loaded"):
        _canary(endpoint, 20).deploy(broken, expected_champion="v0001")

    assert endpoint.traffic() == {"v0001": 100}
    assert endpoint.predict(_features(), routing_key=CARD).model_version == "v0001"


def test_predict_deployed_artifact_deleted_raises_backend_unavailable(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    version = _register(registry, model_dirs[0], threshold=0.3)
    endpoint.deploy(version, expected_champion=None)
    shutil.rmtree(version.artifact_uri)

    with pytest.raises(BackendUnavailableError, match="v0001 .* cannot be loaded"):
        SQLiteModelEndpoint(endpoint.db_path, endpoint.registry).predict(
            _features(), routing_key=CARD
        )


def test_predict_missing_feature_raises_invalid_input_naming_it(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    endpoint.deploy(_register(registry, model_dirs[0], threshold=0.3), expected_champion=None)
    features = _features()
    del features["card_amount_zscore_24h"]

    with pytest.raises(InvalidInputError, match="missing feature 'card_amount_zscore_24h'"):
        endpoint.predict(features, routing_key=CARD)


def test_predict_null_feature_is_scored_as_missing(
    registry: SQLiteModelRegistry, endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    endpoint.deploy(_register(registry, model_dirs[0], threshold=0.3), expected_champion=None)
    features = _features()
    features["secs_since_prev_txn"] = None

    prediction = endpoint.predict(features, routing_key=CARD)

    assert 0.0 <= prediction.probability <= 1.0


class _CountingRegistry:
    """The registry, counting what the endpoint asks of it."""

    def __init__(self, inner: SQLiteModelRegistry) -> None:
        self.inner = inner
        self.calls = 0

    def get(self, version: str) -> ModelVersion:
        self.calls += 1
        return self.inner.get(version)

    def load(self, version: ModelVersion) -> FraudModel:
        self.calls += 1
        return self.inner.load(version)


@pytest.mark.usefixtures("champion")
def test_predict_after_warm_queries_neither_registry_nor_a_new_connection(
    endpoint: SQLiteModelEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingRegistry(endpoint.registry)  # type: ignore[arg-type]
    serving = SQLiteModelEndpoint(endpoint.db_path, counting)  # type: ignore[arg-type]
    serving.warm()
    calls = counting.calls

    def no_connect(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("predict opened a connection")

    rows = [_features(i) for i in range(5)]
    monkeypatch.setattr(sqlite_endpoint, "connect", no_connect)
    monkeypatch.setattr(sqlite_endpoint.sqlite3, "connect", no_connect)
    predictions = [serving.predict(rows[i % 5], routing_key=CARD) for i in range(200)]

    assert counting.calls == calls
    assert {p.model_version for p in predictions} == {"v0001"}


@pytest.mark.usefixtures("champion")
def test_predict_equals_the_models_own_predict_on_many_rows(
    endpoint: SQLiteModelEndpoint, model_dirs: tuple[Path, Path]
) -> None:
    frame = synthetic_training_frame(500, seed=5)
    rows = [{name: float(frame[name].iloc[i]) for name in MODEL_FEATURES} for i in range(500)]
    for row in rows[::3]:
        row["secs_since_prev_txn"] = None
    matrix = np.vstack([feature_row(row) for row in rows])
    expected = load_model(model_dirs[0]).predict(matrix)  # the batch path, all rows at once

    for i, row in enumerate(rows):
        assert endpoint.predict(row, routing_key=CARD).probability == expected[i]
        vector = FeatureVector(matrix[i].copy())
        assert endpoint.predict(vector, routing_key=CARD).probability == expected[i]


def test_predict_refresh_seconds_serves_the_read_split_until_they_pass(
    endpoint: SQLiteModelEndpoint,
    versions: tuple[ModelVersion, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint.deploy(versions[0], expected_champion=None)
    now = [1000.0]
    monkeypatch.setattr(sqlite_endpoint.time, "monotonic", lambda: now[0])
    cached = SQLiteModelEndpoint(endpoint.db_path, endpoint.registry, refresh_seconds=5.0)
    assert cached.predict(_features(), routing_key=CARD).model_version == "v0001"

    endpoint.deploy(versions[1], expected_champion="v0001")  # another instance's change
    now[0] += 4.0
    assert cached.predict(_features(), routing_key=CARD).model_version == "v0001"
    now[0] += 1.0
    assert cached.predict(_features(), routing_key=CARD).model_version == "v0002"


def test_predict_refresh_seconds_own_change_is_served_at_once(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    cached = SQLiteModelEndpoint(endpoint.db_path, endpoint.registry, refresh_seconds=3600.0)
    cached.deploy(versions[0], expected_champion=None)
    assert cached.predict(_features(), routing_key=CARD).model_version == "v0001"
    cached.deploy(versions[1], expected_champion="v0001")
    assert cached.predict(_features(), routing_key=CARD).model_version == "v0002"


def test_predict_while_another_process_switches_never_mixes_two_versions(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...], model_dirs: tuple[Path, Path]
) -> None:
    features = _features()
    expected = {
        "v0001": (float(load_model(model_dirs[0]).predict(feature_row(features))[0]), 0.3),
        "v0002": (float(load_model(model_dirs[1]).predict(feature_row(features))[0]), 0.6),
    }
    endpoint.deploy(versions[0], expected_champion=None)
    serving = SQLiteModelEndpoint(endpoint.db_path, endpoint.registry)
    seen: list[tuple[str, float, float]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def score() -> None:
        try:
            while not done.is_set():
                p = serving.predict(features, routing_key=CARD)
                seen.append((p.model_version, p.probability, p.threshold))
        except BaseException as exc:  # surfaced below: a thread's error is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=score) for _ in range(3)]
    for thread in threads:
        thread.start()
    admin = SQLiteModelEndpoint(endpoint.db_path, endpoint.registry)
    champion = "v0001"
    for _ in range(6):
        if champion == "v0002":
            admin.rollback()
            champion = "v0001"
        else:
            admin.deploy(versions[1], expected_champion="v0001")
            champion = "v0002"
        time.sleep(0.02)
    done.set()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    assert {version for version, _, _ in seen} == {"v0001", "v0002"}
    for version, probability, threshold in seen:
        assert (probability, threshold) == expected[version]


def test_warm_loads_the_split_so_predict_loads_nothing(
    endpoint: SQLiteModelEndpoint, versions: tuple[ModelVersion, ...]
) -> None:
    _deploy_in_turn(_canary(endpoint, 30), versions[0], versions[1])
    counting = _CountingRegistry(endpoint.registry)  # type: ignore[arg-type]
    serving = SQLiteModelEndpoint(endpoint.db_path, counting)  # type: ignore[arg-type]

    serving.warm()
    calls = counting.calls
    served = {serving.predict(_features(), routing_key=k).model_version for k in _card_ids(200)}

    assert served == {"v0001", "v0002"}
    assert counting.calls == calls == 4  # each version's record and model, once


def test_endpoint_negative_refresh_seconds_raises_config_error(
    endpoint: SQLiteModelEndpoint,
) -> None:
    with pytest.raises(ConfigError, match="refresh_seconds"):
        SQLiteModelEndpoint(endpoint.db_path, endpoint.registry, refresh_seconds=-1.0)
