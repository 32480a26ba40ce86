from __future__ import annotations

import shutil
import sqlite3
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from app.backends.local.sqlite_registry import SQLiteModelRegistry
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.model.artifact import MODEL_FILE, load_model
from app.core.records import ModelVersion

METRICS = {"auprc": 0.91, "roc_auc": 0.99}


def _register(
    registry: SQLiteModelRegistry,
    model_dir: Path,
    snapshot_id: str = "snap-1",
    run_name: str | None = None,
) -> str:
    return registry.register(
        artifact_path=model_dir,
        snapshot_id=snapshot_id,
        # Each call its own run unless told: a run registers one version per snapshot.
        run_name=f"run-{uuid.uuid4().hex[:8]}" if run_name is None else run_name,
        threshold=0.42,
        metrics=METRICS,
        params={"num_leaves": 31, "objective": "binary"},
    ).version


def test_register_twice_assigns_v0001_then_v0002(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    first = registry.register(
        artifact_path=model_dirs[0],
        snapshot_id="snap-1",
        run_name="train-snap-1",
        threshold=0.42,
        metrics=METRICS,
        params={"num_leaves": 31},
    )
    second = _register(registry, model_dirs[1], "snap-2")

    assert (first.version, second) == ("v0001", "v0002")
    assert first.snapshot_id == "snap-1"
    assert first.threshold == 0.42
    assert dict(first.metrics) == METRICS
    assert dict(first.params) == {"num_leaves": 31}
    assert first.artifact_uri == str((registry.artifacts_dir / "v0001").resolve())
    assert first.created_at.endswith("+00:00")
    assert first.run_name == "train-snap-1"


def test_register_copies_the_artifact_so_later_edits_to_the_source_do_not_leak(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    source = tmp_path / "candidate"
    source.mkdir()
    original = (model_dirs[0] / MODEL_FILE).read_text()
    (source / MODEL_FILE).write_text(original)

    version = registry.get(_register(registry, source))
    (source / MODEL_FILE).write_text("overwritten")

    assert (Path(version.artifact_uri) / MODEL_FILE).read_text() == original
    assert [p.name for p in registry.artifacts_dir.iterdir()] == ["v0001"]


def test_register_a_file_instead_of_a_directory_raises_and_consumes_no_version(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    with pytest.raises(InvalidInputError, match="must be a model directory"):
        _register(registry, model_dirs[0] / MODEL_FILE)

    assert _register(registry, model_dirs[0]) == "v0001"


def test_register_nan_metric_raises_invalid_input(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    with pytest.raises(InvalidInputError, match="metrics must be JSON"):
        registry.register(
            artifact_path=model_dirs[0],
            snapshot_id="s",
            run_name="r",
            threshold=0.5,
            metrics={"auprc": float("nan")},
            params={},
        )

    assert registry.list_versions() == []
    assert not registry.artifacts_dir.exists()


def test_register_leftover_directory_from_a_crash_is_replaced(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    registry.artifacts_dir.mkdir(parents=True)
    (registry.artifacts_dir / "v0001").mkdir()
    (registry.artifacts_dir / "v0001" / "junk").write_text("half-copied")

    version = registry.get(_register(registry, model_dirs[0]))

    assert version.version == "v0001"
    assert not (Path(version.artifact_uri) / "junk").exists()
    assert (Path(version.artifact_uri) / MODEL_FILE).is_file()


def test_get_unknown_version_raises_not_found(registry: SQLiteModelRegistry) -> None:
    with pytest.raises(NotFoundError, match="'v0042' is not registered"):
        registry.get("v0042")


def test_list_versions_a_new_instance_on_the_same_files_sees_every_version_in_order(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    for model_dir in (*model_dirs, model_dirs[0]):
        _register(registry, model_dir)

    reopened = SQLiteModelRegistry(registry.db_path, registry.artifacts_dir)

    assert [v.version for v in reopened.list_versions()] == ["v0001", "v0002", "v0003"]


def test_registry_database_uses_wal_journal(registry: SQLiteModelRegistry) -> None:
    with sqlite3.connect(registry.db_path) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()

    assert mode == "wal"


def _register_in_child(db_path: Path, artifacts_dir: Path, model_dir: Path) -> list[str]:
    registry = SQLiteModelRegistry(db_path, artifacts_dir)
    return [_register(registry, model_dir) for _ in range(3)]


def test_register_from_four_processes_at_once_gives_unique_consecutive_versions(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    with ProcessPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(_register_in_child, registry.db_path, registry.artifacts_dir, model_dirs[0])
            for _ in range(4)
        ]
        versions = [v for f in futures for v in f.result()]

    assert sorted(versions) == [f"v{i:04d}" for i in range(1, 13)]
    assert sorted(p.name for p in registry.artifacts_dir.iterdir()) == sorted(versions)


def test_load_artifact_gone_raises_backend_unavailable(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    version = registry.get(_register(registry, model_dirs[0], "snap_0001_a"))
    assert registry.load(version).threshold == load_model(model_dirs[0]).threshold
    shutil.rmtree(version.artifact_uri)
    with pytest.raises(BackendUnavailableError, match="v0001 .* cannot be loaded"):
        registry.load(version)


def test_versions_for_snapshot_and_order_come_from_the_registry(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    def register(snapshot_id: str, model_dir: Path) -> ModelVersion:
        return registry.get(_register(registry, model_dir, snapshot_id))

    first = register("snap_0001_a", model_dirs[0])
    second = register("snap_0002_b", model_dirs[1])
    third = register("snap_0001_a", model_dirs[1])
    assert [v.version for v in registry.versions_for_snapshot("snap_0001_a")] == [
        first.version,
        third.version,
    ]
    assert registry.versions_for_snapshot("snap_0003_c") == []
    assert registry.is_newer(third, second) and not registry.is_newer(first, second)


def test_register_same_snapshot_and_run_again_returns_the_first_version(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    first = _register(registry, model_dirs[0], "snap-1", run_name="train-snap-1")

    # A retried step of the same run, with a model trained afresh.
    again = _register(registry, model_dirs[1], "snap-1", run_name="train-snap-1")
    other_run = _register(registry, model_dirs[1], "snap-1", run_name="train-snap-1-r2")
    other_snapshot = _register(registry, model_dirs[1], "snap-2", run_name="train-snap-1")

    assert (first, again, other_run, other_snapshot) == ("v0001", "v0001", "v0002", "v0003")
    assert sorted(p.name for p in registry.artifacts_dir.iterdir()) == ["v0001", "v0002", "v0003"]
    kept = registry.get("v0001")
    assert (Path(kept.artifact_uri) / MODEL_FILE).read_text() == (
        model_dirs[0] / MODEL_FILE
    ).read_text()


def test_register_without_a_run_name_raises_invalid_input(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    with pytest.raises(InvalidInputError, match="must name its run") as caught:
        registry.register(
            artifact_path=model_dirs[0],
            snapshot_id="snap-1",
            run_name="",
            threshold=0.5,
            metrics={},
            params={},
        )

    assert caught.value.location == "run_name"
    assert registry.list_versions() == []


def _register_same_run_in_child(db_path: Path, artifacts_dir: Path, model_dir: Path) -> str:
    return _register(SQLiteModelRegistry(db_path, artifacts_dir), model_dir, run_name="r1")


def test_register_one_run_from_four_processes_at_once_gives_one_version(
    registry: SQLiteModelRegistry, model_dirs: tuple[Path, Path]
) -> None:
    args = (registry.db_path, registry.artifacts_dir, model_dirs[0])
    with ProcessPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(_register_same_run_in_child, *zip(*[args] * 4, strict=True)))

    assert versions == ["v0001"] * 4
    assert [p.name for p in registry.artifacts_dir.iterdir()] == ["v0001"]


def test_registry_file_from_before_run_names_gets_the_column_and_keeps_its_versions(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    db = tmp_path / "old-registry.sqlite"
    with sqlite3.connect(db) as old:  # the schema as the release before run names made it
        old.executescript(
            """
            CREATE TABLE model_versions (
                seq INTEGER PRIMARY KEY, version TEXT NOT NULL UNIQUE,
                snapshot_id TEXT NOT NULL, artifact_uri TEXT NOT NULL, threshold REAL NOT NULL,
                metrics_json TEXT NOT NULL, params_json TEXT NOT NULL, created_at TEXT NOT NULL);
            INSERT INTO model_versions VALUES
                (1, 'v0001', 'snap-1', '/old/v0001', 0.5, '{}', '{}', '2024-01-01'),
                (2, 'v0002', 'snap-1', '/old/v0002', 0.5, '{}', '{}', '2024-01-02');
            """
        )

    registry = SQLiteModelRegistry(db, tmp_path / "models")
    SQLiteModelRegistry(db, tmp_path / "models")  # opening it again migrates nothing twice

    assert [(v.version, v.run_name) for v in registry.list_versions()] == [
        ("v0001", ""),
        ("v0002", ""),
    ]
    assert _register(registry, model_dirs[0], "snap-1", run_name="r1") == "v0003"
    assert _register(registry, model_dirs[0], "snap-1", run_name="r1") == "v0003"
