"""The embedded online store: an SQLite file standing in for the Feature Online Store.

One row per card, keyed by the HMAC card id, its model features one float64 blob in
``MODEL_FEATURES`` order. A sync rebuilds the whole view in one transaction; with WAL
journaling readers keep seeing the previous view until the commit, never a
half-synced one, and each fetch is one statement, so one snapshot's row.

Fetches read through a connection kept open per process and thread (opening one costs
several times the lookup itself), on a ``WITHOUT ROWID`` table (one B-tree descent,
not an index's and then the table's), and decode the blob with one ``frombuffer``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from app.backends.local.sqlite_db import BUSY_TIMEOUT_SECONDS, KeptConnections
from app.core.config import SQLiteOnlineStoreConfig
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.model.features import FeatureVector, feature_matrix
from app.core.records import FeatureRecord, SyncInfo
from app.core.schema import MODEL_FEATURES

# The blob's first bytes name its layout (these features, in this order, as float64):
# a store synced by a release with other features is refused, not read into the wrong
# slots.
LAYOUT = hashlib.sha256(("float64:" + ",".join(MODEL_FEATURES)).encode()).digest()[:8]
_WIDTH = len(LAYOUT) + 8 * len(MODEL_FEATURES)

_VIEW = """
CREATE TABLE feature_view (
  card_id TEXT PRIMARY KEY NOT NULL,
  card_masked TEXT NOT NULL,
  event_time REAL NOT NULL,
  features BLOB NOT NULL,
  feature_timestamp TEXT NOT NULL,
  snapshot_id TEXT NOT NULL
) WITHOUT ROWID
"""
_LOG = """
CREATE TABLE IF NOT EXISTS sync_log (
  snapshot_id TEXT NOT NULL,
  cards INTEGER NOT NULL,
  synced_at TEXT NOT NULL
)
"""
_FETCH = (
    "SELECT card_masked, event_time, features, feature_timestamp, snapshot_id "
    "FROM feature_view WHERE card_id = ?"
)


class SQLiteOnlineStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._readers = KeptConnections(self.path)

    @classmethod
    def from_config(cls, section: SQLiteOnlineStoreConfig, _backends: object) -> Self:
        return cls(section.path)

    def sync(self, features: pd.DataFrame, *, snapshot_id: str) -> SyncInfo:
        missing = [
            c
            for c in ("card_id", "card_masked", "event_time", *MODEL_FEATURES)
            if c not in features
        ]
        if missing:
            raise InvalidInputError(f"feature rows lack columns {missing}", location=snapshot_id)
        if features["card_id"].isna().any():
            raise InvalidInputError("feature rows hold a card without an id", location=snapshot_id)
        if features["card_id"].duplicated().any():
            raise InvalidInputError("feature rows hold a card twice", location=snapshot_id)
        synced_at = datetime.now(UTC).isoformat(timespec="seconds")
        rows = _rows(features, synced_at, snapshot_id)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailableError(f"online store cannot be opened: {exc}") from exc
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                # Dropped and made again rather than emptied: freeing the old pages is
                # cheaper than deleting row by row, and a file from an older release
                # (a rowid table of JSON features) gets today's table on its next sync.
                # Readers in WAL keep their snapshot of the old table until the commit.
                con.execute("DROP TABLE IF EXISTS feature_view")
                con.execute(_VIEW)
                con.execute(_LOG)
                con.executemany("INSERT INTO feature_view VALUES (?, ?, ?, ?, ?, ?)", rows)
                con.execute(
                    "INSERT INTO sync_log VALUES (?, ?, ?)", (snapshot_id, len(rows), synced_at)
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"online store error: {exc}") from exc
        finally:
            con.close()
        return SyncInfo(snapshot_id=snapshot_id, cards=len(rows), synced_at=synced_at)

    def warm(self) -> None:
        """Open this thread's connection and prepare the lookup now; BackendUnavailableError
        before the first sync."""
        if self._read(_FETCH, ("",)) is None:
            raise BackendUnavailableError("online store has not been synced yet")

    def fetch(self, card_id: str) -> FeatureRecord:
        rows = self._read(_FETCH, (card_id,))
        if rows is None:
            raise BackendUnavailableError("online store has not been synced yet")
        if not rows:
            raise NotFoundError("card is not in the feature view")
        masked, event_time, blob, feature_timestamp, snapshot_id = rows[0]
        return FeatureRecord(
            card_id=card_id,
            card_masked=masked,
            event_time=event_time,
            features=_decode(blob),
            feature_timestamp=feature_timestamp,
            snapshot_id=snapshot_id,
        )

    def last_sync(self) -> SyncInfo | None:
        rows = self._read(
            "SELECT snapshot_id, cards, synced_at FROM sync_log ORDER BY rowid DESC LIMIT 1", ()
        )
        return SyncInfo(rows[0][0], int(rows[0][1]), rows[0][2]) if rows else None

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Any] | None:
        """The statement's rows; None when the store was never synced (no file, no table)."""
        kept = self._readers.get()
        if kept is None:
            return None
        try:
            # fetchall: the statement runs to its end, so no read transaction stays open.
            rows: list[Any] = kept.connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("no such table"):
                return None
            self._readers.drop()
            raise BackendUnavailableError(f"online store error: {exc}") from exc
        except sqlite3.Error as exc:
            # Perhaps the file is damaged: the next read opens it afresh.
            self._readers.drop()
            raise BackendUnavailableError(f"online store error: {exc}") from exc
        return rows


def _rows(features: pd.DataFrame, synced_at: str, snapshot_id: str) -> list[tuple[object, ...]]:
    """The view's rows, sorted by card id: each insert then lands at the B-tree's end."""
    ids = features["card_id"].astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    matrix = feature_matrix(features)[order]
    blobs = np.empty((len(features), _WIDTH), dtype=np.uint8)
    blobs[:, : len(LAYOUT)] = np.frombuffer(LAYOUT, dtype=np.uint8)
    blobs[:, len(LAYOUT) :] = matrix.astype("<f8", copy=False).view(np.uint8)
    data = blobs.tobytes()
    return list(
        zip(
            ids[order].tolist(),
            features["card_masked"].astype(str).to_numpy()[order].tolist(),
            features["event_time"].astype(float).to_numpy()[order].tolist(),
            [data[i : i + _WIDTH] for i in range(0, len(data), _WIDTH)],
            repeat(synced_at),
            repeat(snapshot_id),
            strict=False,
        )
    )


def _decode(blob: object) -> FeatureVector | dict[str, float | None]:
    if isinstance(blob, bytes):
        if blob[: len(LAYOUT)] != LAYOUT or len(blob) != _WIDTH:
            # Written by a release with other model features: re-sync to serve them.
            raise BackendUnavailableError(
                "the online store holds features of another layout; run the sync again"
            )
        return FeatureVector.from_bytes(blob, len(LAYOUT))
    if isinstance(blob, str):
        # A view synced by an older release, until its next sync: a JSON object.
        decoded: dict[str, float | None] = json.loads(blob)
        return decoded
    raise BackendUnavailableError("the online store holds an unreadable feature row")
