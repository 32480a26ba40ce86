"""SQLite files for the local registry (versions) and endpoint (the traffic split).

Writers use short-lived connections in WAL mode: the Airflow task, the KFP step
subprocesses and the scoring function each open them on their own, often at the same
time. The scoring path reads through :class:`KeptConnections` instead: opening a
connection costs far more than the lookup it serves.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.errors import BackendUnavailableError, NotFoundError
from app.core.records import ModelVersion

# Writers wait this long for another process's transaction before giving up.
BUSY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Schema:
    """A database's tables as they are now, and how a file made by an older release catches up."""

    tables: str
    # (table, column, definition) for columns added after the first release: files made
    # before them get ``ALTER TABLE ... ADD COLUMN`` (SQLite has no ``IF NOT EXISTS`` there).
    added_columns: tuple[tuple[str, str, str], ...] = ()
    # Run once every column exists, since an index may cover an added one.
    indexes: str = ""


REGISTRY_SCHEMA = Schema(
    tables="""
CREATE TABLE IF NOT EXISTS model_versions (
    seq          INTEGER PRIMARY KEY,
    version      TEXT NOT NULL UNIQUE,
    snapshot_id  TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    threshold    REAL NOT NULL,
    metrics_json TEXT NOT NULL,
    params_json  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    run_name     TEXT NOT NULL DEFAULT ''
);
""",
    added_columns=(("model_versions", "run_name", "TEXT NOT NULL DEFAULT ''"),),
    indexes="""
-- One version per (snapshot, run): a retried register step gets the version it made.
-- Versions registered before runs were kept have no run name and stay as they are.
CREATE UNIQUE INDEX IF NOT EXISTS model_versions_snapshot_run
    ON model_versions (snapshot_id, run_name) WHERE run_name != '';
""",
)

# The endpoint names versions; the registry (another file, another role) owns them.
ENDPOINT_SCHEMA = Schema(
    tables="""
-- One row at most: the split the endpoint serves. ``version`` is the champion; a canary,
-- when one is tried, gets ``canary_percent`` of traffic and the champion the rest.
CREATE TABLE IF NOT EXISTS deployment (
    slot           TEXT PRIMARY KEY CHECK (slot = 'live'),
    version        TEXT NOT NULL,
    deployed_at    TEXT NOT NULL,
    canary         TEXT,
    canary_percent INTEGER NOT NULL DEFAULT 0
);
-- Every change of the split, oldest first: ``version`` is what the change put in (or
-- back), ``percent`` its share after it, ``previous`` the version it took traffic from.
-- A rollback without a canary redeploys the ``previous`` of the row that made the
-- champion champion.
CREATE TABLE IF NOT EXISTS deployment_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL,
    previous    TEXT,
    deployed_at TEXT NOT NULL,
    action      TEXT NOT NULL DEFAULT 'deploy',
    percent     INTEGER NOT NULL DEFAULT 100
);
""",
    # Homes made when the endpoint held one version: every row then was a full deploy.
    added_columns=(
        ("deployment", "canary", "TEXT"),
        ("deployment", "canary_percent", "INTEGER NOT NULL DEFAULT 0"),
        ("deployment_history", "action", "TEXT NOT NULL DEFAULT 'deploy'"),
        ("deployment_history", "percent", "INTEGER NOT NULL DEFAULT 100"),
    ),
)


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


def ensure_schema(path: Path, schema: Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(schema.tables)
        # Checked before locking: every process opens these files, and a current file,
        # the usual case, needs no write lock at all.
        if _missing_columns(connection, schema):
            with write_transaction(connection):
                # Again under the lock: another process may have just added them.
                for table, column, definition in _missing_columns(connection, schema):
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        if schema.indexes:
            connection.executescript(schema.indexes)


def _missing_columns(connection: sqlite3.Connection, schema: Schema) -> list[tuple[str, str, str]]:
    present: dict[str, set[str]] = {}
    missing = []
    for table, column, definition in schema.added_columns:
        if table not in present:
            rows = connection.execute(f"PRAGMA table_info({table})").fetchall()
            present[table] = {row["name"] for row in rows}
        if column not in present[table]:
            missing.append((table, column, definition))
    return missing


@contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: the write lock from the first statement, so
    what the block reads cannot change before it writes; any exception rolls back."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def to_model_version(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        version=row["version"],
        snapshot_id=row["snapshot_id"],
        artifact_uri=row["artifact_uri"],
        threshold=row["threshold"],
        metrics=json.loads(row["metrics_json"]),
        params=json.loads(row["params_json"]),
        created_at=row["created_at"],
        run_name=row["run_name"],
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


class KeptConnection:
    """One open read connection, and what its owner noted about it (``mark``)."""

    __slots__ = ("connection", "file", "mark", "pid", "recheck_at")

    def __init__(self, connection: sqlite3.Connection, pid: int, file: tuple[int, int]) -> None:
        self.connection = connection
        self.pid = pid
        self.file = file  # (st_dev, st_ino) of the file it opened
        self.recheck_at = 0.0  # time.monotonic() after which the file is looked at again
        # Free for the owner: e.g. the ``PRAGMA data_version`` it last saw on this connection.
        self.mark: Any = None


class KeptConnections:
    """Read connections to one SQLite file kept open, one per (process, thread).

    Per thread, since a connection is not for concurrent use (the function serves
    requests on several threads); per process, since a connection must never cross a
    ``fork`` (gunicorn may import the app in its master and fork workers from it): a
    child that finds its parent's connection opens its own and leaves the inherited one
    alone. At most every ``recheck_seconds`` a use checks the file is still the one
    opened (a ``stat``), so a file replaced or deleted underneath is reopened, not
    served stale for longer than that.

    Readers never write, and each statement runs in autocommit, so no read transaction
    stays open between statements (callers read with ``fetchall``): a kept connection
    sees every commit and never holds back WAL checkpoints.
    """

    def __init__(self, path: Path, *, rows: bool = False, recheck_seconds: float = 1.0) -> None:
        self.path = path
        self._rows = rows
        self._recheck = recheck_seconds
        self._local = threading.local()
        # Connections inherited across a fork: kept referenced so they are never used or
        # closed here (SQLite's lock bookkeeping for them came along from the parent).
        self._inherited: list[sqlite3.Connection] = []

    def get(self) -> KeptConnection | None:
        """This thread's connection; None when the file does not exist (yet)."""
        kept: KeptConnection | None = getattr(self._local, "kept", None)
        if kept is not None and kept.pid == os.getpid() and time.monotonic() < kept.recheck_at:
            return kept
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.drop()
            return None
        except OSError as exc:
            raise BackendUnavailableError(f"cannot open {self.path.name}: {exc}") from exc
        if kept is not None and kept.pid == os.getpid() and kept.file == (st.st_dev, st.st_ino):
            kept.recheck_at = time.monotonic() + self._recheck
            return kept
        self.drop()
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            if self._rows:
                connection.row_factory = sqlite3.Row
            # A reader must never write; nor become a writer by a bug.
            connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"cannot open {self.path.name}: {exc}") from exc
        kept = KeptConnection(connection, os.getpid(), (st.st_dev, st.st_ino))
        kept.recheck_at = time.monotonic() + self._recheck
        self._local.kept = kept
        return kept

    def drop(self) -> None:
        """Close this thread's connection (after an error: the next use reopens)."""
        kept: KeptConnection | None = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is None:
            return
        if kept.pid != os.getpid():
            self._inherited.append(kept.connection)
        else:
            kept.connection.close()
