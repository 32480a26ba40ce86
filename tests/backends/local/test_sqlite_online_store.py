from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from app.backends.local.sqlite_online_store import SQLiteOnlineStore
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.schema import MODEL_FEATURES


def _features(cards: list[str], value: float) -> pd.DataFrame:
    rows = []
    for i, card in enumerate(cards):
        row = {"card_id": card, "card_masked": f"400000******{i:04d}", "event_time": float(i)}
        row.update({name: value for name in MODEL_FEATURES})
        row["secs_since_prev_txn"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def test_fetch_before_any_sync_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    assert store.last_sync() is None
    with pytest.raises(BackendUnavailableError):
        store.fetch("abc")


def test_sync_replaces_the_whole_view(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    store.sync(_features(["a", "b"], 1.0), snapshot_id="s1")
    info = store.sync(_features(["b", "c"], 2.0), snapshot_id="s2")
    assert info.cards == 2
    with pytest.raises(NotFoundError):
        store.fetch("a")
    record = store.fetch("c")
    assert record.snapshot_id == "s2"
    assert record.features["V1"] == 2.0
    assert record.features["secs_since_prev_txn"] is None
    last = store.last_sync()
    assert last is not None and last.snapshot_id == "s2"


def test_sync_failure_keeps_previous_view(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    store.sync(_features(["a", "b"], 1.0), snapshot_id="s1")
    with pytest.raises(InvalidInputError):
        store.sync(_features(["c", "c"], 2.0), snapshot_id="s2")
    assert store.fetch("a").snapshot_id == "s1"
    last = store.last_sync()
    assert last is not None and last.snapshot_id == "s1"


def test_reader_during_sync_sees_old_view(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SQLiteOnlineStore(path)
    store.sync(_features(["a"], 1.0), snapshot_id="s1")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM feature_view")
    # The sync is mid-way (uncommitted): a reader still gets the complete old view.
    assert store.fetch("a").snapshot_id == "s1"
    writer.execute("ROLLBACK")
    writer.close()
