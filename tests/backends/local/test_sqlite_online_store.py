from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.backends.local.sqlite_online_store import SQLiteOnlineStore
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.model.features import FeatureVector
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


def _values(store: SQLiteOnlineStore, card: str) -> tuple[str, set[float | None]]:
    record = store.fetch(card)
    return record.snapshot_id, {v for k, v in record.features.items() if k != "secs_since_prev_txn"}


def _wait_for(condition: Callable[[], object], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_fetch_during_syncs_from_another_thread_never_mixes_two_syncs(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    cards = [f"card-{i:05d}" for i in range(3000)]
    store.sync(_features(cards, 0.0), snapshot_id="s0")
    seen: list[tuple[str, set[float | None]]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        reader = SQLiteOnlineStore(store.path)  # kept connection of its own, as a server's
        try:
            while not done.is_set():
                seen.append(_values(reader, cards[len(seen) % len(cards)]))
        except BaseException as exc:  # surfaced below: a thread's error is otherwise lost
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    _wait_for(lambda: bool(seen) or bool(errors))
    for n in range(1, 6):
        store.sync(_features(cards, float(n)), snapshot_id=f"s{n}")
    _wait_for(lambda: (seen and seen[-1][0] == "s5") or bool(errors))
    done.set()
    thread.join(timeout=30)

    assert not errors
    # Every record is one sync's: its snapshot and its values agree, in sync order.
    assert all(values == {float(snap[1:])} for snap, values in seen)
    order = [int(snap[1:]) for snap, _ in seen]
    assert order == sorted(order)
    assert _values(SQLiteOnlineStore(store.path), cards[0]) == ("s5", {5.0})


def test_fetch_kept_connection_sees_each_new_sync(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    reader = SQLiteOnlineStore(store.path)
    for n in range(3):
        store.sync(_features(["a"], float(n)), snapshot_id=f"s{n}")
        assert reader.fetch("a").snapshot_id == f"s{n}"


def test_fetch_threads_each_read_through_their_own_connection(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    store.sync(_features(["a"], 1.0), snapshot_id="s1")
    store.warm()
    connections: list[object] = []

    def read() -> None:
        store.fetch("a")
        kept = store._readers.get()
        connections.append(kept.connection if kept else None)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mine = store._readers.get()
    assert mine is not None
    assert len({id(c) for c in [*connections, mine.connection]}) == 4


def _fetch_in_child(store: SQLiteOnlineStore, queue: Any) -> None:
    kept = store._readers.get()
    queue.put((store.fetch("a").snapshot_id, kept is not None and kept.pid == os.getpid()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_fetch_in_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    store.sync(_features(["a"], 1.0), snapshot_id="s1")
    store.warm()  # as a gunicorn master that imported and warmed the app before forking
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fetch_in_child, args=(store, queue))
    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert queue.get(timeout=5) == ("s1", True)
    assert store.fetch("a").snapshot_id == "s1"  # the parent's connection still serves


def test_fetch_store_file_replaced_is_reopened_not_served_stale(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SQLiteOnlineStore(path).sync(_features(["a"], 1.0), snapshot_id="s1")
    store = SQLiteOnlineStore(path)
    store._readers._recheck = 0.0  # look at the file on every fetch
    assert store.fetch("a").snapshot_id == "s1"
    other = tmp_path / "other.sqlite"
    SQLiteOnlineStore(other).sync(_features(["a"], 2.0), snapshot_id="s2")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(other, path)

    assert store.fetch("a").snapshot_id == "s2"


def test_fetch_view_synced_by_an_older_release_reads_its_json_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        "CREATE TABLE feature_view (card_id TEXT PRIMARY KEY, card_masked TEXT NOT NULL, "
        "event_time REAL NOT NULL, features TEXT NOT NULL, feature_timestamp TEXT NOT NULL, "
        "snapshot_id TEXT NOT NULL);"
        "CREATE TABLE sync_log (snapshot_id TEXT NOT NULL, cards INTEGER NOT NULL, "
        "synced_at TEXT NOT NULL);"
    )
    features = {name: 1.5 for name in MODEL_FEATURES} | {"secs_since_prev_txn": None}
    old.execute(
        "INSERT INTO feature_view VALUES ('a', 'm', 1.0, ?, 't', 's1')", (json.dumps(features),)
    )
    old.close()
    store = SQLiteOnlineStore(path)

    assert store.fetch("a").features == features
    store.sync(_features(["a"], 2.0), snapshot_id="s2")  # rebuilt as today's table
    assert store.fetch("a").features["V1"] == 2.0


def test_fetch_features_of_another_layout_raises_backend_unavailable(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    store.sync(_features(["a"], 1.0), snapshot_id="s1")
    writer = sqlite3.connect(store.path, isolation_level=None)
    writer.execute("UPDATE feature_view SET features = ?", (b"\0" * 8 + b"\0" * 80,))
    writer.close()

    with pytest.raises(BackendUnavailableError, match="another layout"):
        store.fetch("a")


def test_fetch_returns_a_feature_vector_equal_to_the_synced_values(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "s.sqlite")
    frame = _features(["a", "b"], 0.0)
    frame["V3"] = [0.1, -7.25]
    frame.loc[1, "amount"] = float("nan")
    store.sync(frame, snapshot_id="s1")

    record = store.fetch("b")

    assert isinstance(record.features, FeatureVector)
    assert record.features["V3"] == -7.25
    assert record.features["amount"] is None
    assert (record.card_masked, record.event_time) == ("400000******0001", 1.0)


def test_sync_card_without_id_raises_invalid_input(tmp_path: Path) -> None:
    frame = _features(["a", "b"], 1.0)
    frame.loc[1, "card_id"] = None
    with pytest.raises(InvalidInputError, match="without an id"):
        SQLiteOnlineStore(tmp_path / "s.sqlite").sync(frame, snapshot_id="s1")


def test_warm_before_any_sync_raises_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="not been synced"):
        SQLiteOnlineStore(tmp_path / "s.sqlite").warm()


def test_last_sync_file_without_tables_is_none(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sqlite3.connect(path).close()
    store = SQLiteOnlineStore(path)
    assert store.last_sync() is None
    with pytest.raises(BackendUnavailableError, match="not been synced"):
        store.fetch("a")
