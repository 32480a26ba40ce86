"""SQLite files for the local registry (versions) and endpoint (the deployment pointer).

Short-lived connections in WAL mode: the Airflow task, the KFP step subprocesses
and the scoring function each open them on their own, often at the same time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from app.core.errors import BackendUnavailableError, NotFoundError
from app.core.records import ModelVersion

# Writers wait this long for another process's transaction before giving up.
BUSY_TIMEOUT_SECONDS = 30.0

REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    seq          INTEGER PRIMARY KEY,
    version      TEXT NOT NULL UNIQUE,
    snapshot_id  TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    threshold    REAL NOT NULL,
    metrics_json TEXT NOT NULL,
    params_json  TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
"""

# The endpoint names versions; the registry (another file, another role) owns them.
ENDPOINT_SCHEMA = """
-- One row at most: the version the endpoint serves.
CREATE TABLE IF NOT EXISTS deployment (
    slot        TEXT PRIMARY KEY CHECK (slot = 'live'),
    version     TEXT NOT NULL,
    deployed_at TEXT NOT NULL
);
-- Every switch of the pointer, oldest first; a rollback redeploys the previous row's version.
CREATE TABLE IF NOT EXISTS deployment_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL,
    previous    TEXT,
    deployed_at TEXT NOT NULL
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode; callers open explicit ``BEGIN IMMEDIATE`` transactions."""
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackendUnavailableError(f"cannot open {path.name}: {exc}") from exc
    with closing(connection):
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        try:
            yield connection
        except sqlite3.Error as exc:
            # Locked, unreadable or corrupt database: the caller gets a 503, not a trace.
            raise BackendUnavailableError(f"{path.name}: {exc}") from exc


def ensure_schema(path: Path, schema: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(schema)


def to_model_version(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        version=row["version"],
        snapshot_id=row["snapshot_id"],
        artifact_uri=row["artifact_uri"],
        threshold=row["threshold"],
        metrics=json.loads(row["metrics_json"]),
        params=json.loads(row["params_json"]),
        created_at=row["created_at"],
    )


def version_name(seq: int) -> str:
    return f"v{seq:04d}"


def read_version(path: Path, version: str) -> ModelVersion:
    with connect(path) as connection:
        row = connection.execute(
            "SELECT * FROM model_versions WHERE version = ?", (version,)
        ).fetchone()
    if row is None:
        raise NotFoundError(f"model version {version!r} is not registered")
    return to_model_version(row)
