"""The embedded online store: an SQLite file standing in for the Feature Online Store.

One row per card, keyed by the HMAC card id. A sync replaces the whole view in
one transaction; with WAL journaling readers keep seeing the previous view
until the commit, never a half-synced one.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import pandas as pd

from app.core.config import SQLiteOnlineStoreConfig
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.records import FeatureRecord, SyncInfo
from app.core.schema import MODEL_FEATURES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_view (
  card_id TEXT PRIMARY KEY,
  card_masked TEXT NOT NULL,
  event_time REAL NOT NULL,
  features TEXT NOT NULL,
  feature_timestamp TEXT NOT NULL,
  snapshot_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_log (
  snapshot_id TEXT NOT NULL,
  cards INTEGER NOT NULL,
  synced_at TEXT NOT NULL
);
"""


class SQLiteOnlineStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_config(cls, section: SQLiteOnlineStoreConfig, _backends: object) -> Self:
        return cls(section.path)

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.exists():
            raise BackendUnavailableError("online store has not been synced yet")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"online store cannot be opened: {exc}") from exc
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            yield con
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"online store error: {exc}") from exc
        finally:
            con.close()

    def sync(self, features: pd.DataFrame, *, snapshot_id: str) -> SyncInfo:
        missing = [
            c
            for c in ("card_id", "card_masked", "event_time", *MODEL_FEATURES)
            if c not in features
        ]
        if missing:
            raise InvalidInputError(f"feature rows lack columns {missing}", location=snapshot_id)
        if features["card_id"].duplicated().any():
            raise InvalidInputError("feature rows hold a card twice", location=snapshot_id)
        synced_at = datetime.now(UTC).isoformat(timespec="seconds")
        rows = [
            (
                rec["card_id"],
                rec["card_masked"],
                float(rec["event_time"]),
                json.dumps({name: _clean(rec[name]) for name in MODEL_FEATURES}),
                synced_at,
                snapshot_id,
            )
            for rec in features.to_dict("records")
        ]
        with self._connect(create=True) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("DELETE FROM feature_view")
                con.executemany("INSERT INTO feature_view VALUES (?, ?, ?, ?, ?, ?)", rows)
                con.execute(
                    "INSERT INTO sync_log VALUES (?, ?, ?)", (snapshot_id, len(rows), synced_at)
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return SyncInfo(snapshot_id=snapshot_id, cards=len(rows), synced_at=synced_at)

    def fetch(self, card_id: str) -> FeatureRecord:
        with self._connect(create=False) as con:
            row = con.execute(
                "SELECT card_id, card_masked, event_time, features, feature_timestamp, snapshot_id "
                "FROM feature_view WHERE card_id = ?",
                (card_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError("card is not in the feature view")
        return FeatureRecord(
            card_id=row[0],
            card_masked=row[1],
            event_time=row[2],
            features=json.loads(row[3]),
            feature_timestamp=row[4],
            snapshot_id=row[5],
        )

    def last_sync(self) -> SyncInfo | None:
        if not self.path.exists():
            return None
        with self._connect(create=False) as con:
            row = con.execute(
                "SELECT snapshot_id, cards, synced_at FROM sync_log ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
        return SyncInfo(row[0], int(row[1]), row[2]) if row else None


def _clean(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number
