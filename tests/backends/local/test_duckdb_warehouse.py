from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.backends.local.duckdb_warehouse import DuckDBLineage, DuckDBWarehouse
from app.core import cards
from app.core.errors import NotFoundError
from app.core.ingest.reader import read_transactions
from app.core.records import PipelineResult
from app.local.generate import GeneratedData, write_csv

KEY = b"k" * 32


def _raw_frame(path: Path) -> pd.DataFrame:
    frame = read_transactions(path).frame
    numbers = frame.pop("card_number")
    frame.insert(1, "card_id", [cards.card_id(n, KEY) for n in numbers])
    frame.insert(2, "card_masked", [cards.mask(n) for n in numbers])
    return frame


def _load_and_build(wh: DuckDBWarehouse, csv: Path) -> int:
    """``csv`` loaded as ingest ``a@1`` (``a.csv``), then a training build."""
    wh.load_raw(_raw_frame(csv), ingest_id="a@1", source_object="a.csv", content_hash="1")
    return wh.build_training_table()


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


@pytest.fixture
def lineage(wh: DuckDBWarehouse) -> DuckDBLineage:
    return DuckDBLineage(wh.path)


def test_load_raw_same_ingest_twice_adds_nothing(
    wh: DuckDBWarehouse, lineage: DuckDBLineage, small_csv: Path
) -> None:
    frame = _raw_frame(small_csv)
    first = wh.load_raw(
        frame, ingest_id="small.csv@aa", source_object="small.csv", content_hash="aa"
    )
    second = wh.load_raw(
        frame, ingest_id="small.csv@aa", source_object="small.csv", content_hash="aa"
    )
    assert (first.rows_loaded, first.already_loaded) == (3000, False)
    assert (second.rows_loaded, second.already_loaded) == (0, True)
    assert wh.table_counts()["raw.transactions"] == 3000
    ingest = lineage.ingest_by_hash("aa")
    assert ingest is not None
    assert (ingest.ingest_id, ingest.source_object, ingest.rows) == (
        "small.csv@aa",
        "small.csv",
        3000,
    )


def test_load_raw_failing_row_rolls_back_everything(
    wh: DuckDBWarehouse, lineage: DuckDBLineage, small_csv: Path
) -> None:
    frame = _raw_frame(small_csv)
    frame.loc[2999, "amount"] = np.nan
    frame["amount"] = frame["amount"].astype(object).where(frame["amount"].notna(), None)
    with pytest.raises(Exception, match="NOT NULL"):
        wh.load_raw(frame, ingest_id="bad@1", source_object="bad.csv", content_hash="1")
    assert wh.table_counts()["raw.transactions"] == 0
    assert lineage.ingest_by_hash("1") is None


def test_build_training_table_features_are_point_in_time(
    wh: DuckDBWarehouse, tmp_path: Path
) -> None:
    header = ",".join(
        f'"{c}"'
        for c in ["Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class", "card_number"]
    )
    card = cards.make_card_number(7)
    other = cards.make_card_number(8)
    rows = [(0, 10.0, card), (100, 30.0, card), (5000, 20.0, card), (200, 99.0, other)]
    lines = [",".join([str(t), *["0.1"] * 28, str(a), '"0"', f'"{c}"']) for t, a, c in rows]
    path = tmp_path / "pit.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    wh.load_raw(_raw_frame(path), ingest_id="pit@1", source_object="pit.csv", content_hash="1")
    assert wh.build_training_table() == 4
    snap = wh.snapshot_training(ingest_id="pit@1", source_object="pit.csv")
    t = wh.read_snapshot(snap.snapshot_id).sort_values("event_time")
    mine = t[t["card_id"] == cards.card_id(card, KEY)]
    assert mine["card_txn_count_1h"].tolist() == [1, 2, 1]
    assert mine["card_txn_count_24h"].tolist() == [1, 2, 3]
    assert mine["card_amount_sum_24h"].tolist() == [10.0, 40.0, 60.0]
    assert mine["card_amount_max_24h"].tolist() == [10.0, 30.0, 30.0]
    assert mine["secs_since_prev_txn"].isna().tolist() == [True, False, False]
    assert mine["secs_since_prev_txn"].tolist()[1:] == [100.0, 4900.0]
    latest = wh.latest_card_features(snap.snapshot_id).set_index("card_masked")
    assert latest.loc[cards.mask(card), "event_time"] == 5000.0
    assert latest.loc[cards.mask(other), "card_txn_count_24h"] == 1


def test_snapshot_training_same_ingest_returns_same_snapshot(
    wh: DuckDBWarehouse, small_csv: Path
) -> None:
    _load_and_build(wh, small_csv)
    first = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    again = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    assert first == again
    assert first.row_count == 3000
    assert first.fraud_count == 60
    assert first.snapshot_id.startswith("snap_0001_")
    assert DuckDBLineage(wh.path).snapshots() == [first]
    assert DuckDBLineage(wh.path).snapshot_for_ingest("a@1") == first


def test_snapshot_later_loads_leave_old_snapshot_unchanged(
    wh: DuckDBWarehouse, lineage: DuckDBLineage, small_csv: Path, kaggle_csv: Path
) -> None:
    _load_and_build(wh, small_csv)
    first = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    wh.load_raw(_raw_frame(kaggle_csv), ingest_id="b@2", source_object="b.csv", content_hash="2")
    assert wh.build_training_table() == 3400
    second = wh.snapshot_training(ingest_id="b@2", source_object="b.csv")
    assert second.row_count == 3400
    assert second.snapshot_id.startswith("snap_0002_")
    assert lineage.snapshot(first.snapshot_id).row_count == 3000
    assert lineage.latest_snapshot() == second
    assert wh.snapshot_content_hash(first.snapshot_id) == first.content_hash
    assert len(wh.read_snapshot(first.snapshot_id)) == 3000


def test_snapshot_unknown_raises_not_found(wh: DuckDBWarehouse, lineage: DuckDBLineage) -> None:
    with pytest.raises(NotFoundError):
        lineage.snapshot("snap_9999_deadbeef")
    with pytest.raises(NotFoundError):
        wh.read_snapshot("snap_9999_deadbeef")


def test_lineage_empty_warehouse_has_no_latest(lineage: DuckDBLineage) -> None:
    assert lineage.latest_snapshot() is None
    assert lineage.latest_training_run() is None
    assert lineage.snapshots() == []


def test_record_training_run_round_trips_with_step_states(lineage: DuckDBLineage) -> None:
    result = PipelineResult(
        "train-1", "snap_0001_x", True, "ok", {"auprc": 0.8}, "v0001", {"gate": "succeeded"}
    )
    lineage.record_training_run(result)
    assert lineage.training_runs("snap_0001_x") == [result]
    assert lineage.training_runs("other") == []
    assert lineage.latest_training_run() == result


def _csv(tmp_path: Path, name: str, rows: list[tuple[int, float, str]]) -> Path:
    header = ",".join(
        f'"{c}"'
        for c in ["Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class", "card_number"]
    )
    lines = [",".join([str(t), *["0.1"] * 28, str(a), '"0"', f'"{c}"']) for t, a, c in rows]
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def test_build_training_table_same_second_rows_do_not_see_later_peers(
    wh: DuckDBWarehouse, tmp_path: Path
) -> None:
    card = cards.make_card_number(3)
    path = _csv(tmp_path, "ties.csv", [(100, 1.0, card), (100, 900.0, card), (100, 5.0, card)])
    wh.load_raw(_raw_frame(path), ingest_id="ties@1", source_object="ties.csv", content_hash="t")
    wh.build_training_table()
    snap = wh.snapshot_training(ingest_id="ties@1", source_object="ties.csv")
    t = wh.read_snapshot(snap.snapshot_id).sort_values("txn_id")
    assert t["card_txn_count_1h"].tolist() == [1, 2, 3]
    assert t["card_amount_max_24h"].tolist() == [1.0, 900.0, 900.0]
    assert t["secs_since_prev_txn"].isna().tolist() == [True, False, False]
    assert t["secs_since_prev_txn"].tolist()[1:] == [0.0, 0.0]


def test_load_raw_second_file_is_placed_after_the_first(
    wh: DuckDBWarehouse, tmp_path: Path
) -> None:
    card = cards.make_card_number(4)
    day1 = _csv(tmp_path, "d1.csv", [(0, 1.0, card), (500, 2.0, card)])
    day2 = _csv(tmp_path, "d2.csv", [(0, 3.0, card), (10, 4.0, card)])
    wh.load_raw(_raw_frame(day1), ingest_id="d1@1", source_object="d1.csv", content_hash="1")
    wh.load_raw(_raw_frame(day2), ingest_id="d2@2", source_object="d2.csv", content_hash="2")
    wh.build_training_table()
    snap = wh.snapshot_training(ingest_id="d2@2", source_object="d2.csv")
    t = wh.read_snapshot(snap.snapshot_id).sort_values("event_time")
    assert t["event_time"].tolist() == [0.0, 500.0, 501.0, 511.0]
    assert t["amount"].tolist() == [1.0, 2.0, 3.0, 4.0]
    latest = wh.latest_card_features(snap.snapshot_id)
    assert latest["amount"].tolist() == [4.0]
    assert latest["card_txn_count_1h"].tolist() == [4]


def test_load_raw_same_content_under_new_name_adds_nothing(
    wh: DuckDBWarehouse, small_csv: Path
) -> None:
    frame = _raw_frame(small_csv)
    wh.load_raw(frame, ingest_id="a.csv@h", source_object="a.csv", content_hash="h")
    again = wh.load_raw(frame, ingest_id="b.csv@h", source_object="b.csv", content_hash="h")
    assert again.already_loaded and again.ingest_id == "a.csv@h"
    assert wh.table_counts()["raw.transactions"] == 3000


def test_table_hash_stored_in_order_equals_sorted_read(
    wh: DuckDBWarehouse, lineage: DuckDBLineage, small_csv: Path
) -> None:
    import duckdb

    from app.backends.local.duckdb_warehouse import table_hash

    _load_and_build(wh, small_csv)
    snap = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    con = duckdb.connect(str(wh.path))
    try:
        # Shuffled on disk: only the sorted read can give the snapshot's hash.
        con.execute(
            "CREATE TABLE shuffled AS SELECT * FROM training.transactions ORDER BY random()"
        )
        assert table_hash(con, "shuffled")[0] == snap.content_hash
        assert table_hash(con, snap.table, stored_in_order=True)[0] == snap.content_hash
    finally:
        con.close()


def test_connect_existing_file_skips_schema_ddl_yet_old_files_get_new_columns(
    tmp_path: Path,
) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE SCHEMA lineage; CREATE TABLE lineage.training_runs (run_name VARCHAR PRIMARY KEY,"
        " snapshot_id VARCHAR NOT NULL, deployed BOOLEAN NOT NULL, gate_reason VARCHAR NOT NULL,"
        " metrics VARCHAR NOT NULL, model_version VARCHAR, finished_at VARCHAR NOT NULL)"
    )
    con.close()
    assert DuckDBLineage(path).training_runs() == []  # upgraded: the query reads `steps`
    assert DuckDBWarehouse(path).table_counts()["raw.transactions"] == 0


def _tables(wh: DuckDBWarehouse) -> dict[str, str]:
    import duckdb

    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables "
            "WHERE table_schema IN ('training', 'snapshots') ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return {str(name): str(kind) for name, kind in rows}


def test_snapshot_training_current_build_is_adopted_not_copied(
    wh: DuckDBWarehouse, small_csv: Path
) -> None:
    _load_and_build(wh, small_csv)
    assert _tables(wh) == {
        "snapshots.build_000001": "BASE TABLE",
        "training.transactions": "VIEW",
    }
    snap = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    # The build became the snapshot: one table, and the training view reads it.
    assert _tables(wh) == {snap.table: "BASE TABLE", "training.transactions": "VIEW"}
    assert wh.table_counts()["training.transactions"] == 3000
    assert wh.snapshot_content_hash(snap.snapshot_id) == snap.content_hash


def test_build_training_table_unadopted_build_is_dropped_adopted_one_kept(
    wh: DuckDBWarehouse, small_csv: Path, kaggle_csv: Path, small_data: GeneratedData
) -> None:
    tiny_csv = write_csv(small_data.frame.head(100), wh.path.parent / "c.csv")
    _load_and_build(wh, small_csv)
    wh.load_raw(_raw_frame(kaggle_csv), ingest_id="b@2", source_object="b.csv", content_hash="2")
    wh.build_training_table()  # the first build is nobody's snapshot: replaced, dropped
    assert [t for t in _tables(wh) if t.startswith("snapshots.")] == ["snapshots.build_000002"]
    snap = wh.snapshot_training(ingest_id="b@2", source_object="b.csv")
    wh.load_raw(_raw_frame(tiny_csv), ingest_id="c@3", source_object="c.csv", content_hash="3")
    rows = wh.build_training_table()
    assert [t for t in _tables(wh) if t.startswith("snapshots.")] == [
        "snapshots.build_000003",
        snap.table,
    ]
    assert rows > len(wh.read_snapshot(snap.snapshot_id)) == 3400


def test_build_training_table_same_ingests_again_changes_nothing(
    wh: DuckDBWarehouse, small_csv: Path
) -> None:
    wh.load_raw(_raw_frame(small_csv), ingest_id="a@1", source_object="a.csv", content_hash="1")
    assert wh.build_training_table() == 3000
    before = _tables(wh)
    assert wh.build_training_table() == 3000  # a retried transform
    assert (
        _tables(wh)
        == before
        == {
            "snapshots.build_000001": "BASE TABLE",
            "training.transactions": "VIEW",
        }
    )


def test_snapshot_training_second_ingest_without_transform_copies_the_adopted_table(
    wh: DuckDBWarehouse, small_csv: Path
) -> None:
    _load_and_build(wh, small_csv)
    first = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    second = wh.snapshot_training(ingest_id="b@2", source_object="b.csv")
    assert second.table != first.table
    assert second.content_hash == first.content_hash
    assert set(_tables(wh)) == {first.table, second.table, "training.transactions"}
    assert len(wh.read_snapshot(first.snapshot_id)) == len(wh.read_snapshot(second.snapshot_id))


def test_build_training_table_home_with_a_training_table_gets_the_view(
    wh: DuckDBWarehouse, small_csv: Path
) -> None:
    import duckdb

    from app.core import sql

    wh.load_raw(_raw_frame(small_csv), ingest_id="a@1", source_object="a.csv", content_hash="1")
    query = sql.render("training", {"raw.transactions": "raw.transactions"}, "duckdb")
    con = duckdb.connect(str(wh.path))
    try:
        # As a home made before builds existed has it: a table, and no build row.
        con.execute(f"CREATE TABLE training.transactions AS {query} LIMIT 10")
    finally:
        con.close()
    legacy = wh.snapshot_training(ingest_id="old@0", source_object="old.csv")
    assert legacy.row_count == 10  # a pre-build home snapshots its table as it is
    assert wh.build_training_table() == 3000
    assert _tables(wh)["training.transactions"] == "VIEW"
    assert wh.snapshot_training(ingest_id="a@1", source_object="a.csv").row_count == 3000
    assert len(wh.read_snapshot(legacy.snapshot_id)) == 10
