"""BigQueryWarehouse and BigQueryLineage: against bqemulator (``emulators``), and at the
client boundary with a recording fake (the exact requests, their timeouts and retries).

The emulator tests provision each warehouse as the stack does (datasets, the raw and
training tables from app.core.schema) under datasets of their own, so they share one
emulator and never each other's rows.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import bigquery

from app.backends.gcp.bigquery_warehouse import (
    FRAME_COLUMNS,
    LINEAGE_TABLES,
    STAGING_SCHEMA,
    BigQueryLineage,
    BigQueryWarehouse,
    label_value,
)
from app.backends.gcp.calls import CallPolicy
from app.backends.local.duckdb_warehouse import DuckDBWarehouse
from app.core.config import BigQueryWarehouseConfig, CallPolicyConfig
from app.core.errors import ConfigError, InvalidInputError, NotFoundError
from app.core.records import PipelineResult
from app.core.schema import RAW_SCHEMA, TRAINING_SCHEMA, Column
from tests.support.bqemulator import BqEmulator, bqemulator
from tests.support.synthetic import synthetic_raw_frame

__all__ = ["bqemulator"]  # the session fixture, imported to be found here

# Short: the emulator answers some bad requests with HTTP 500, which is retried.
POLICY = CallPolicy(timeout=10.0, deadline=20.0, initial=0.05, maximum=0.5)
LABEL = re.compile(r"^[a-z0-9_-]{0,63}$")
emulated = pytest.mark.emulators


def _frame(seed: int, rows: int = 200, cards: int = 12) -> pd.DataFrame:
    """What load_landed hands load_raw: validated rows, cards already keyed."""
    return synthetic_raw_frame(rows, cards=cards, seed=seed, days=1.0)


def _timed(rows: list[tuple[float, float, int]], seed: int = 0) -> pd.DataFrame:
    """A frame of (source_time, amount, card) rows, in file order."""
    frame = _frame(seed, rows=len(rows)).copy()
    frame["source_time"] = [float(t) for t, _, _ in rows]
    frame["amount"] = [float(a) for _, a, _ in rows]
    frame["card_id"] = [f"card-{c:02d}" for _, _, c in rows]
    frame["card_masked"] = [f"400000******{c:04d}" for _, _, c in rows]
    frame["label"] = 0
    return frame


# --- the emulator ------------------------------------------------------------------------

_COUNTER = itertools.count(1)
_DDL_TYPES = {"FLOAT64": "FLOAT64", "INT64": "INT64", "STRING": "STRING", "TIMESTAMP": "TIMESTAMP"}


def _ddl(columns: tuple[Column, ...]) -> str:
    return ", ".join(
        f"{c.name} {_DDL_TYPES[c.bq_type]}{' NOT NULL' if c.mode == 'REQUIRED' else ''}"
        for c in columns
    )


@pytest.fixture(scope="session")
def bq_client(bqemulator: BqEmulator) -> Any:
    return bqemulator.client()


@pytest.fixture
def section(bqemulator: BqEmulator, bq_client: Any) -> BigQueryWarehouseConfig:
    """A fresh warehouse, provisioned as components/warehouse_datasets.py does."""
    prefix = f"w{next(_COUNTER):03d}"
    cfg = BigQueryWarehouseConfig(
        project=bqemulator.project,
        location="US",
        raw_dataset=f"{prefix}_raw",
        training_dataset=f"{prefix}_training",
        snapshot_dataset=f"{prefix}_snapshot",
        lineage_dataset=f"{prefix}_lineage",
        snapshot_expiration_days=7,
    )
    for dataset in (cfg.raw_dataset, cfg.training_dataset, cfg.snapshot_dataset):
        bq_client.create_dataset(f"{cfg.project}.{dataset}", timeout=10)
    bq_client.create_dataset(f"{cfg.project}.{cfg.lineage_dataset}", timeout=10)
    # DDL rather than tables.insert: the emulator enforces REQUIRED only as NOT NULL
    # (BigQuery enforces both), and the failing-row test needs it enforced.
    p = cfg.project
    for statement in (
        f"CREATE TABLE `{p}.{cfg.raw_dataset}.transactions` ({_ddl(RAW_SCHEMA)}) "
        "PARTITION BY DATE(loaded_at)",
        f"CREATE TABLE `{p}.{cfg.training_dataset}.transactions` ({_ddl(TRAINING_SCHEMA)}) "
        "CLUSTER BY card_id",
    ):
        bq_client.query(statement, timeout=10).result(timeout=20)
    return cfg


@pytest.fixture
def wh(section: BigQueryWarehouseConfig, bq_client: Any) -> BigQueryWarehouse:
    return BigQueryWarehouse(section, POLICY, client=bq_client)


@pytest.fixture
def lineage(section: BigQueryWarehouseConfig, bq_client: Any) -> BigQueryLineage:
    return BigQueryLineage(section, POLICY, client=bq_client)


def _load(wh: Any, frame: pd.DataFrame, name: str, content_hash: str, generation: int = 0) -> Any:
    return wh.load_raw(
        frame,
        ingest_id=f"{name}@{content_hash[:16]}",
        source_object=name,
        content_hash=content_hash,
        generation=generation,
    )


@emulated
def test_load_raw_same_content_twice_adds_nothing(
    wh: BigQueryWarehouse, lineage: BigQueryLineage
) -> None:
    frame = _frame(1)
    first = _load(wh, frame, "a.csv", "aa" * 32, generation=7)
    second = _load(wh, frame, "a.csv", "aa" * 32, generation=7)

    assert (first.rows_loaded, first.already_loaded) == (200, False)
    assert (second.rows_loaded, second.already_loaded) == (0, True)
    assert second.ingest_id == first.ingest_id
    counts = wh.table_counts()
    assert (counts["raw.transactions"], counts["raw.ingests"]) == (200, 1)
    ingest = lineage.ingest_by_hash("aa" * 32)
    assert ingest is not None
    assert (ingest.ingest_id, ingest.source_object, ingest.rows, ingest.generation) == (
        first.ingest_id,
        "a.csv",
        200,
        7,
    )
    assert lineage.ingest_by_object("a.csv", 7) == ingest
    assert lineage.ingest_by_object("a.csv", 8) is None


@emulated
def test_load_raw_same_content_under_new_name_adds_nothing(
    wh: BigQueryWarehouse, lineage: BigQueryLineage
) -> None:
    frame = _frame(2)
    first = _load(wh, frame, "a.csv", "bb" * 32)
    again = _load(wh, frame, "b.csv", "bb" * 32)

    assert again.already_loaded and again.ingest_id == first.ingest_id
    assert again.source_object == "b.csv"
    assert wh.table_counts()["raw.transactions"] == 200
    assert lineage.ingest_by_object("b.csv", 0) is None


@emulated
def test_load_raw_same_content_committed_meanwhile_adds_nothing(
    wh: BigQueryWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(2)
    first = _load(wh, frame, "a.csv", "bd" * 32)
    # Another load of this content commits after this one's check, before its transaction:
    # the transaction's own check is what stops it.
    monkeypatch.setattr(wh, "_ingest", lambda *_args: None)
    again = _load(wh, frame, "b.csv", "bd" * 32)

    assert (again.ingest_id, again.rows_loaded, again.already_loaded) == (first.ingest_id, 0, True)
    counts = wh.table_counts()
    assert (counts["raw.transactions"], counts["raw.ingests"]) == (200, 1)


@emulated
def test_load_raw_failing_row_rolls_back_everything(
    wh: BigQueryWarehouse,
    lineage: BigQueryLineage,
    section: BigQueryWarehouseConfig,
    bq_client: Any,
) -> None:
    frame = _frame(3)
    # Staged as NULL (staging is NULLABLE); raw's NOT NULL refuses it in the transaction,
    # after the ingest record was written in it.
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[frame.index[-1], "amount"] = None

    with pytest.raises(InvalidInputError, match="NOT NULL"):
        _load(wh, frame, "bad.csv", "cc" * 32)

    counts = wh.table_counts()
    assert (counts["raw.transactions"], counts["raw.ingests"]) == (0, 0)
    assert lineage.ingest_by_hash("cc" * 32) is None
    tables = [t.table_id for t in bq_client.list_tables(f"{section.project}.{section.raw_dataset}")]
    assert tables == ["transactions"]  # the staging table went too


@emulated
def test_load_raw_second_file_is_placed_after_the_first(wh: BigQueryWarehouse) -> None:
    _load(wh, _timed([(0, 1.0, 4), (500, 2.0, 4)], seed=1), "d1.csv", "d1" * 32)
    _load(wh, _timed([(0, 3.0, 4), (10, 4.0, 4)], seed=2), "d2.csv", "d2" * 32)
    assert wh.build_training_table() == 4
    snap = wh.snapshot_training(ingest_id=f"d2.csv@{'d2' * 8}", source_object="d2.csv")

    t = wh.read_snapshot(snap.snapshot_id).sort_values("event_time")
    assert t["event_time"].tolist() == [0.0, 500.0, 501.0, 511.0]
    assert t["amount"].tolist() == [1.0, 2.0, 3.0, 4.0]
    latest = wh.latest_card_features(snap.snapshot_id)
    assert latest["amount"].tolist() == [4.0]
    assert latest["card_txn_count_1h"].tolist() == [4]


@emulated
def test_build_training_table_same_second_rows_do_not_see_later_peers(
    wh: BigQueryWarehouse,
) -> None:
    _load(wh, _timed([(100, 1.0, 3), (100, 900.0, 3), (100, 5.0, 3)]), "ties.csv", "ee" * 32)
    assert wh.build_training_table() == 3
    snap = wh.snapshot_training(ingest_id=f"ties.csv@{'ee' * 8}", source_object="ties.csv")

    t = wh.read_snapshot(snap.snapshot_id).sort_values("txn_id")
    assert t["card_txn_count_1h"].tolist() == [1, 2, 3]
    assert t["card_amount_max_24h"].tolist() == [1.0, 900.0, 900.0]
    assert t["secs_since_prev_txn"].isna().tolist() == [True, False, False]


@emulated
def test_build_training_table_rebuild_replaces_rows(wh: BigQueryWarehouse) -> None:
    _load(wh, _frame(4, rows=150), "a.csv", "f1" * 32)
    assert wh.build_training_table() == 150
    _load(wh, _frame(5, rows=120), "b.csv", "f2" * 32)

    assert wh.build_training_table() == 270
    assert wh.build_training_table() == 270
    assert wh.table_counts()["training.transactions"] == 270


@emulated
def test_snapshot_later_loads_leave_old_snapshot_unchanged(
    wh: BigQueryWarehouse, lineage: BigQueryLineage, bq_client: Any
) -> None:
    _load(wh, _frame(6, rows=150), "a.csv", "a1" * 32)
    wh.build_training_table()
    first = wh.snapshot_training(ingest_id=f"a.csv@{'a1' * 8}", source_object="a.csv")
    _load(wh, _frame(7, rows=100), "b.csv", "b2" * 32)
    assert wh.build_training_table() == 250
    second = wh.snapshot_training(ingest_id=f"b.csv@{'b2' * 8}", source_object="b.csv")

    assert (first.row_count, second.row_count) == (150, 250)
    assert first.snapshot_id.startswith("snap_0001_")
    assert second.snapshot_id.startswith("snap_0002_")
    assert len(wh.read_snapshot(first.snapshot_id)) == 150
    assert wh.snapshot_content_hash(first.snapshot_id) == first.content_hash
    assert wh.snapshot_content_hash(second.snapshot_id) == second.content_hash
    assert first.content_hash != second.content_hash
    assert lineage.snapshot(first.snapshot_id) == first
    assert lineage.latest_snapshot() == second
    assert lineage.snapshots() == [first, second]
    assert lineage.snapshot_for_ingest(f"a.csv@{'a1' * 8}") == first
    assert lineage.snapshot_for_ingest("nobody@0") is None
    assert wh.table_counts()["lineage.snapshots"] == 2
    labels = bq_client.get_table(first.table).labels
    assert labels["row_count"] == "150"
    assert labels["content_hash"] == first.content_hash[:32]
    assert labels["source_object"] == label_value("a.csv")


@emulated
def test_snapshot_training_same_ingest_returns_same_snapshot(wh: BigQueryWarehouse) -> None:
    frame = _frame(8, rows=100)
    frame["label"] = [1 if i % 20 == 0 else 0 for i in range(100)]
    _load(wh, frame, "a.csv", "c3" * 32)
    wh.build_training_table()

    first = wh.snapshot_training(ingest_id=f"a.csv@{'c3' * 8}", source_object="a.csv")
    again = wh.snapshot_training(ingest_id=f"a.csv@{'c3' * 8}", source_object="a.csv")
    assert first == again
    assert (first.row_count, first.fraud_count) == (100, 5)


@emulated
def test_snapshot_training_empty_training_table_raises_invalid_input(
    wh: BigQueryWarehouse, lineage: BigQueryLineage
) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        wh.snapshot_training(ingest_id="x@1", source_object="x.csv")
    assert lineage.snapshots() == []


@emulated
def test_snapshot_unknown_raises_not_found(wh: BigQueryWarehouse, lineage: BigQueryLineage) -> None:
    with pytest.raises(NotFoundError):
        lineage.snapshot("snap_9999_deadbeef")
    for read in (wh.read_snapshot, wh.snapshot_content_hash, wh.latest_card_features):
        with pytest.raises(NotFoundError, match="snap_9999_deadbeef"):
            read("snap_9999_deadbeef")


@emulated
def test_lineage_empty_warehouse_has_no_latest(lineage: BigQueryLineage) -> None:
    assert lineage.latest_snapshot() is None
    assert lineage.latest_training_run() is None
    assert lineage.snapshots() == []
    assert lineage.ingest_by_hash("00" * 32) is None


@emulated
def test_record_training_run_round_trips_and_replaces(lineage: BigQueryLineage) -> None:
    first = PipelineResult(
        "train-1", "snap_0001_x", False, "gate failed", {"auprc": 0.4}, None, {"gate": "failed"}
    )
    other = PipelineResult("train-2", "snap_0002_y", True, "ok", {"auprc": 0.8}, "v0002", {})
    lineage.record_training_run(first)
    lineage.record_training_run(other)
    rerun = PipelineResult(
        "train-1", "snap_0001_x", True, "ok", {"auprc": 0.9}, "v0003", {"gate": "succeeded"}
    )
    lineage.record_training_run(rerun)

    assert lineage.training_runs("snap_0001_x") == [rerun]
    assert lineage.training_runs("other") == []
    assert lineage.training_runs() == [other, rerun]
    assert lineage.latest_training_run() == rerun


@emulated
def test_sql_training_and_latest_features_equal_on_emulator_and_duckdb(
    wh: BigQueryWarehouse, tmp_path: Path
) -> None:
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    day1 = _frame(9, rows=180, cards=10)
    day2 = _frame(10, rows=120, cards=10)
    # Same-second rows on one card, and a card seen in both files.
    day2.loc[day2.index[:3], "source_time"] = 50.0
    day2.loc[day2.index[:3], "card_id"] = day1["card_id"].iloc[0]
    for target in (wh, duck):
        _load(target, day1, "day1.csv", "11" * 32)
        _load(target, day2, "day2.csv", "22" * 32)
        assert target.build_training_table() == 300
    bq_snap = wh.snapshot_training(ingest_id=f"day2.csv@{'22' * 8}", source_object="day2.csv")
    duck_snap = duck.snapshot_training(ingest_id=f"day2.csv@{'22' * 8}", source_object="day2.csv")

    assert (bq_snap.row_count, bq_snap.fraud_count) == (duck_snap.row_count, duck_snap.fraud_count)
    _assert_same(wh.read_snapshot(bq_snap.snapshot_id), duck.read_snapshot(duck_snap.snapshot_id))
    _assert_same(
        wh.latest_card_features(bq_snap.snapshot_id),
        duck.latest_card_features(duck_snap.snapshot_id),
        key="card_id",
    )
    assert wh.table_counts() == duck.table_counts()


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame, key: str = "txn_id") -> None:
    assert list(got.columns) == list(expected.columns)
    got = got.sort_values(key).reset_index(drop=True)
    expected = expected.sort_values(key).reset_index(drop=True)
    for column in expected.columns:
        if pd.api.types.is_float_dtype(expected[column]):
            np.testing.assert_allclose(
                got[column].to_numpy(dtype=float),
                expected[column].to_numpy(dtype=float),
                rtol=1e-9,
                atol=1e-9,
                equal_nan=True,
                err_msg=column,
            )
        else:
            assert got[column].astype(str).tolist() == expected[column].astype(str).tolist(), column


@emulated
def test_from_config_client_reaches_the_configured_endpoint(
    bqemulator: BqEmulator, section: BigQueryWarehouseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.credentials import AnonymousCredentials

    # No credentials to discover here; the endpoint is what is under test.
    monkeypatch.setattr(
        "google.auth.default", lambda *a, **k: (AnonymousCredentials(), section.project)
    )
    configured = section.model_copy(update={"api_endpoint": bqemulator.endpoint})
    services = SimpleNamespace(config=SimpleNamespace(gcp_calls=CallPolicyConfig()))
    lineage = BigQueryLineage.from_config(configured, services)  # type: ignore[arg-type]

    assert lineage.snapshots() == []
    assert lineage.policy == CallPolicy.from_config(CallPolicyConfig())


# --- at the client boundary ---------------------------------------------------------------

SECTION = BigQueryWarehouseConfig(
    project="proj",
    raw_dataset="raw",
    training_dataset="training",
    snapshot_dataset="snap",
    lineage_dataset="lineage",
    snapshot_expiration_days=7,
)
FAST = CallPolicy(timeout=3.0, deadline=9.0, initial=0.001, maximum=0.002)


@dataclass
class Recorded:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class FakeRows(list[dict[str, Any]]):
    def __init__(self, rows: list[dict[str, Any]], calls: list[Recorded]) -> None:
        super().__init__(rows)
        self.calls = calls

    def to_arrow(self, **kwargs: Any) -> pa.Table:
        self.calls.append(Recorded("RowIterator.to_arrow", (), kwargs))
        return pa.Table.from_pylist(list(self))

    def to_arrow_iterable(self, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        self.calls.append(Recorded("RowIterator.to_arrow_iterable", (), kwargs))
        if self:
            yield pa.RecordBatch.from_pylist(list(self))


@dataclass
class FakeJob:
    rows: list[dict[str, Any]]
    calls: list[Recorded]
    num_dml_affected_rows: int | None = None

    def result(self, **kwargs: Any) -> FakeRows:
        self.calls.append(Recorded("Job.result", (), kwargs))
        return FakeRows(self.rows, self.calls)


@dataclass
class FakeBigQuery:
    """Records every call; answers a query by the first (pattern, answer) that matches it.

    An answer is rows, a DML count, an exception, or a callable of the SQL.
    """

    answers: list[tuple[str, Any]] = field(default_factory=list)
    tables: list[str] = field(default_factory=lambda: list(LINEAGE_TABLES))
    calls: list[Recorded] = field(default_factory=list)
    upload_failures: list[BaseException] = field(default_factory=list)
    uploads: list[bytes] = field(default_factory=list)
    missing_dataset: bool = False

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Recorded(method, args, kwargs))

    def query(self, sql: str, **kwargs: Any) -> FakeJob:
        self._record("query", sql, **kwargs)
        for pattern, answer in self.answers:
            if re.search(pattern, sql, re.DOTALL):
                if callable(answer):
                    answer = answer(sql)
                if isinstance(answer, BaseException):
                    raise answer
                if isinstance(answer, int):
                    return FakeJob([], self.calls, answer)
                return FakeJob(answer, self.calls)
        raise AssertionError(f"unexpected query:\n{sql}")

    def list_tables(self, dataset: str, **kwargs: Any) -> list[Any]:
        self._record("list_tables", dataset, **kwargs)
        if self.missing_dataset:
            raise gexc.NotFound(f"Not found: Dataset {dataset}")
        return [SimpleNamespace(table_id=t) for t in self.tables]

    def create_table(self, table: Any, **kwargs: Any) -> Any:
        self._record("create_table", table, **kwargs)
        self.tables.append(table.table_id)
        return table

    def update_table(self, table: Any, fields: list[str], **kwargs: Any) -> Any:
        self._record("update_table", table, fields, **kwargs)
        return table

    def delete_table(self, ref: str, **kwargs: Any) -> None:
        self._record("delete_table", ref, **kwargs)

    def load_table_from_file(self, file_obj: io.BytesIO, ref: str, **kwargs: Any) -> FakeJob:
        self._record("load_table_from_file", file_obj, ref, **kwargs)
        if self.upload_failures:
            raise self.upload_failures.pop(0)
        if kwargs.get("rewind"):
            file_obj.seek(0)
        self.uploads.append(file_obj.read())
        return FakeJob([], self.calls)

    def of(self, method: str) -> list[Recorded]:
        return [c for c in self.calls if c.method == method]

    def statements(self) -> list[str]:
        return [c.args[0] for c in self.of("query")]


def _training_rows(n: int, frauds: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row: dict[str, Any] = {c.name: 0.5 for c in TRAINING_SCHEMA}
        row.update(
            txn_id=f"a.csv@x:{i:09d}",
            card_id=f"card-{i % 3}",
            card_masked="400000******0001",
            event_time=float(i),
            card_txn_count_1h=1,
            card_txn_count_24h=1,
            secs_since_prev_txn=None if i == 0 else 1.0,
            label=1 if i < frauds else 0,
        )
        rows.append(row)
    return rows


def _snapshot_answers(seq: int = 3) -> list[tuple[str, Any]]:
    return [
        (r"SELECT \* FROM `proj.lineage.snapshots` WHERE source_ingest_id", []),
        (r"MAX\(seq\)", [{"seq": seq}]),
        (r"^CREATE SNAPSHOT TABLE", []),
        (
            r"^SELECT \* FROM `proj.snap.snap_\d{4}_[0-9a-f]{8}` ORDER BY txn_id$",
            _training_rows(4, 1),
        ),
        (r"^SELECT generation FROM `proj.lineage.ingests`", [{"generation": 1733050000123456}]),
        (r"^INSERT INTO `proj.lineage.snapshots`", 1),
    ]


def _load_answers(loaded_now: bool = True) -> list[tuple[str, Any]]:
    return [
        (r"FROM `proj.lineage.ingests` WHERE content_hash = @content_hash", []),
        (r"BEGIN TRANSACTION", [{"ingest_id": "a.csv@aaaa", "loaded_now": loaded_now}]),
    ]


def test_snapshot_training_clones_then_labels_with_lineage_and_expiration() -> None:
    fake = FakeBigQuery(answers=_snapshot_answers(seq=3))
    before = datetime.now(UTC)
    info = BigQueryWarehouse(SECTION, FAST, client=fake).snapshot_training(
        ingest_id="A File.CSV@aaaa", source_object="A File.CSV"
    )
    after = datetime.now(UTC)

    suffix = hashlib.sha256(b"A File.CSV@aaaa").hexdigest()[:8]
    assert info.snapshot_id == f"snap_0003_{suffix}"
    assert info.table == f"proj.snap.snap_0003_{suffix}"
    assert (info.row_count, info.fraud_count) == (4, 1)
    create = [s for s in fake.statements() if s.startswith("CREATE SNAPSHOT")]
    assert create == [
        f"CREATE SNAPSHOT TABLE `proj.snap.snap_0003_{suffix}` CLONE `proj.training.transactions`"
    ]
    (update,) = fake.of("update_table")
    table, fields = update.args
    assert fields == ["labels", "description", "expires"]
    assert table.reference.table_id == info.snapshot_id
    assert table.labels == {
        "source_object": label_value("A File.CSV"),
        "source_ingest": label_value("A File.CSV@aaaa"),
        "source_generation": "1733050000123456",
        "row_count": "4",
        "fraud_count": "1",
        "content_hash": info.content_hash[:32],
    }
    assert all(LABEL.match(k) and LABEL.match(v) for k, v in table.labels.items())
    assert before + timedelta(days=7) <= table.expires <= after + timedelta(days=7)
    assert info.content_hash in table.description
    (insert,) = [c for c in fake.of("query") if c.args[0].startswith("INSERT INTO")]
    params = {p.name: p.value for p in insert.kwargs["job_config"].query_parameters}
    assert (params["snapshot_id"], params["seq"], params["content_hash"]) == (
        info.snapshot_id,
        3,
        info.content_hash,
    )


def test_snapshot_training_hash_is_the_snapshots_own_rows() -> None:
    fake = FakeBigQuery(answers=_snapshot_answers())
    wh = BigQueryWarehouse(SECTION, FAST, client=fake)
    info = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")

    reread = FakeBigQuery(answers=[(r"ORDER BY txn_id", _training_rows(4, 1))])
    assert (
        BigQueryWarehouse(SECTION, FAST, client=reread).snapshot_content_hash(info.snapshot_id)
        == info.content_hash
    )
    changed = _training_rows(4, 1)
    changed[2]["amount"] = 0.75
    reread = FakeBigQuery(answers=[(r"ORDER BY txn_id", changed)])
    assert (
        BigQueryWarehouse(SECTION, FAST, client=reread).snapshot_content_hash(info.snapshot_id)
        != info.content_hash
    )


def test_snapshot_training_lost_race_drops_own_snapshot_and_returns_winner() -> None:
    winner = {
        "snapshot_id": "snap_0003_other",
        "table_name": "proj.snap.snap_0003_other",
        "source_ingest_id": "a@1",
        "source_object": "a.csv",
        "row_count": 4,
        "fraud_count": 1,
        "content_hash": "f" * 64,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    lookups = iter([[], [winner]])
    answers = _snapshot_answers()
    answers[0] = (answers[0][0], lambda _sql: next(lookups))
    answers[-1] = (answers[-1][0], 0)
    fake = FakeBigQuery(answers=answers)

    info = BigQueryWarehouse(SECTION, FAST, client=fake).snapshot_training(
        ingest_id="a@1", source_object="a.csv"
    )

    assert info.snapshot_id == "snap_0003_other"
    (dropped,) = fake.of("delete_table")
    assert dropped.args[0].startswith("proj.snap.snap_0003_")
    assert dropped.args[0] != "proj.snap.snap_0003_other"


def test_load_raw_stages_with_explicit_schema_then_appends_in_one_transaction() -> None:
    fake = FakeBigQuery(answers=_load_answers())
    frame = _frame(1, rows=5)
    before = datetime.now(UTC)
    result = BigQueryWarehouse(SECTION, FAST, client=fake).load_raw(
        frame, ingest_id="a.csv@aaaa", source_object="a.csv", content_hash="a" * 64, generation=3
    )

    assert (result.rows_loaded, result.already_loaded) == (5, False)
    (created,) = fake.of("create_table")
    staging = created.args[0]
    assert re.fullmatch(r"_load_[0-9a-f]{32}", staging.table_id)
    assert staging.dataset_id == "raw"
    assert [(f.name, f.field_type, f.mode) for f in staging.schema] == [
        (c.name, c.bq_type, "NULLABLE") for c in STAGING_SCHEMA
    ]
    assert before + timedelta(hours=23) < staging.expires < before + timedelta(hours=25)
    (upload,) = fake.of("load_table_from_file")
    config = upload.kwargs["job_config"]
    assert upload.args[1] == f"proj.raw.{staging.table_id}"
    assert config.source_format == bigquery.SourceFormat.PARQUET
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE
    assert config.create_disposition == bigquery.CreateDisposition.CREATE_NEVER
    assert [(f.name, f.field_type, f.mode) for f in config.schema] == [
        (c.name, c.bq_type, "NULLABLE") for c in STAGING_SCHEMA
    ]
    assert (upload.kwargs["rewind"], upload.kwargs["num_retries"]) == (True, 0)
    staged = pq.read_table(io.BytesIO(fake.uploads[0])).to_pandas()
    assert list(staged.columns) == [c.name for c in STAGING_SCHEMA]
    assert staged["amount"].tolist() == frame["amount"].tolist()
    assert set(staged["ingest_id"]) == {"a.csv@aaaa"}
    assert set(staged["content_hash"]) == {"a" * 64}
    assert set(staged["generation"]) == {3}
    (script,) = [c for c in fake.of("query") if "BEGIN TRANSACTION" in c.args[0]]
    text = script.args[0]
    assert text.lstrip().startswith("BEGIN TRANSACTION;")
    assert (
        text.index("INSERT INTO `proj.lineage.ingests`")
        < text.index("INSERT INTO `proj.raw.transactions`")
        < text.index("COMMIT TRANSACTION;")
    )
    assert f"`proj.raw.{staging.table_id}`" in text
    # Its values come from the staged rows: nothing else is sent with it.
    assert script.kwargs["job_config"].query_parameters == []
    (dropped,) = fake.of("delete_table")
    assert dropped.args[0] == f"proj.raw.{staging.table_id}"
    assert dropped.kwargs["not_found_ok"] is True


def test_load_raw_another_load_committed_first_reports_already_loaded() -> None:
    fake = FakeBigQuery(answers=_load_answers(loaded_now=False))
    result = BigQueryWarehouse(SECTION, FAST, client=fake).load_raw(
        _frame(1, rows=5), ingest_id="b.csv@aaaa", source_object="b.csv", content_hash="a" * 64
    )
    assert (result.ingest_id, result.rows_loaded, result.already_loaded) == ("a.csv@aaaa", 0, True)


def test_load_raw_transaction_failure_still_drops_staging_table() -> None:
    answers = _load_answers()
    answers[1] = (answers[1][0], gexc.BadRequest("NOT NULL constraint failed: amount"))
    fake = FakeBigQuery(answers=answers)

    with pytest.raises(InvalidInputError, match="NOT NULL"):
        BigQueryWarehouse(SECTION, FAST, client=fake).load_raw(
            _frame(1, rows=5), ingest_id="a@1", source_object="a.csv", content_hash="a" * 64
        )
    assert len(fake.of("delete_table")) == 1


def test_load_raw_known_content_uploads_nothing() -> None:
    known = {
        "ingest_id": "first.csv@aaaa",
        "source_object": "first.csv",
        "content_hash": "a" * 64,
        "row_count": 5,
        "loaded_at": datetime(2024, 1, 1, tzinfo=UTC),
        "generation": 0,
    }
    fake = FakeBigQuery(answers=[(r"lineage.ingests", [known])])
    result = BigQueryWarehouse(SECTION, FAST, client=fake).load_raw(
        _frame(1, rows=5), ingest_id="b.csv@aaaa", source_object="b.csv", content_hash="a" * 64
    )
    assert (result.ingest_id, result.already_loaded) == ("first.csv@aaaa", True)
    assert fake.of("load_table_from_file") == [] and fake.of("create_table") == []


def test_load_raw_transient_upload_failure_is_retried_by_the_policy() -> None:
    fake = FakeBigQuery(answers=_load_answers())
    fake.upload_failures.append(gexc.ServiceUnavailable("try again"))
    result = BigQueryWarehouse(SECTION, FAST, client=fake).load_raw(
        _frame(1, rows=5), ingest_id="a@1", source_object="a.csv", content_hash="a" * 64
    )
    assert result.rows_loaded == 5
    assert len(fake.of("load_table_from_file")) == 2
    assert len(fake.uploads) == 1 and pq.read_table(io.BytesIO(fake.uploads[0])).num_rows == 5


@pytest.mark.parametrize(
    ("change", "missing"),
    [(lambda f: f.drop(columns=["card_id"]), "card_id"), (lambda f: f.iloc[0:0], None)],
)
def test_load_raw_bad_frame_raises_invalid_input_naming_object_before_any_call(
    change: Callable[[pd.DataFrame], pd.DataFrame], missing: str | None
) -> None:
    fake = FakeBigQuery()
    with pytest.raises(InvalidInputError) as caught:
        BigQueryWarehouse(SECTION, FAST, client=fake).load_raw(
            change(_frame(1, rows=5)), ingest_id="a@1", source_object="a.csv", content_hash="1"
        )
    assert caught.value.location == "a.csv"
    assert missing is None or missing in str(caught.value)
    assert fake.calls == []


def test_read_snapshot_id_that_is_no_table_id_raises_not_found_without_a_call() -> None:
    fake = FakeBigQuery()
    with pytest.raises(NotFoundError):
        BigQueryWarehouse(SECTION, FAST, client=fake).read_snapshot("x`; DROP TABLE y")
    assert fake.calls == []


def test_every_client_call_has_a_timeout_and_a_retry() -> None:
    run = {
        "run_name": "train-1",
        "snapshot_id": "s",
        "deployed": True,
        "gate_reason": "ok",
        "metrics": "{}",
        "model_version": "v1",
        "steps": "{}",
    }
    fake = FakeBigQuery(
        answers=[
            (r"^\s*BEGIN TRANSACTION;\s*DELETE", [{"n": 4}]),
            *_load_answers(),
            *_snapshot_answers(),
            (r"ORDER BY txn_id", _training_rows(4, 1)),
            (r"recency", _training_rows(1, 0)),
            (
                r"AS raw_transactions",
                [
                    dict.fromkeys(
                        [
                            "raw_transactions",
                            "raw_ingests",
                            "lineage_snapshots",
                            "training_transactions",
                        ],
                        1,
                    )
                ],
            ),
            (r"^MERGE", 1),
            (r"lineage.training_runs", [run]),
        ],
        tables=[],  # the lineage tables are created too
    )
    wh = BigQueryWarehouse(SECTION, FAST, client=fake)
    lineage = BigQueryLineage(SECTION, FAST, client=fake)
    wh.load_raw(_frame(1, rows=5), ingest_id="a@1", source_object="a.csv", content_hash="a" * 64)
    wh.build_training_table()
    info = wh.snapshot_training(ingest_id="a@1", source_object="a.csv")
    wh.read_snapshot(info.snapshot_id)
    wh.latest_card_features(info.snapshot_id)
    wh.table_counts()
    lineage.record_training_run(PipelineResult("train-1", "s", True, "ok", {}, "v1", {}))
    lineage.latest_training_run()

    methods = {c.method for c in fake.calls}
    assert {"query", "Job.result", "create_table", "update_table", "delete_table"} <= methods
    assert {"list_tables", "load_table_from_file", "RowIterator.to_arrow"} <= methods
    assert len(fake.of("create_table")) == 1 + len(LINEAGE_TABLES)  # staging, then lineage
    for call in fake.calls:
        if call.method.startswith("RowIterator."):
            # Pages are fetched with the retry and timeout the rows were asked for with.
            assert call.kwargs["timeout"] == FAST.timeout, call
            continue
        if call.method == "load_table_from_file":
            # It takes no retry: the policy's retry wraps it (see the retried-upload test).
            assert (call.kwargs["timeout"], call.kwargs["num_retries"]) == (FAST.timeout, 0)
            continue
        expected = FAST.deadline if call.method == "Job.result" else FAST.timeout
        assert call.kwargs["timeout"] == expected, call
        assert isinstance(call.kwargs["retry"], gretry.Retry), call
        assert call.kwargs["retry"].timeout == FAST.deadline, call
        if call.method == "query":
            assert call.kwargs["job_retry"].timeout == FAST.deadline, call


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a.csv", None), ("day_1-final", "day_1-final"), ("x" * 63, "x" * 63)],
)
def test_label_value_valid_or_sanitized_within_label_rules(text: str, expected: str | None) -> None:
    value = label_value(text)
    assert LABEL.match(value)
    if expected is not None:
        assert value == expected
    else:
        assert value.startswith("a-csv-") and value != label_value("a-csv")


def test_label_value_long_or_different_names_stay_distinct_and_short() -> None:
    long_a, long_b = "A" * 100 + "1", "A" * 100 + "2"
    values = {label_value(v) for v in (long_a, long_b, "A.csv", "A csv", "a.csv")}
    assert len(values) == 5
    assert all(LABEL.match(v) and len(v) <= 63 for v in values)


def test_staging_schema_is_raw_without_event_time_plus_ingest_values() -> None:
    assert [c.name for c in STAGING_SCHEMA] == [
        *(c.name for c in RAW_SCHEMA if c.name != "event_time"),
        "content_hash",
        "generation",
    ]
    assert set(FRAME_COLUMNS) < {c.name for c in STAGING_SCHEMA}
    assert {c.mode for c in STAGING_SCHEMA} == {"NULLABLE"}


def test_lineage_dataset_missing_raises_config_error_naming_it() -> None:
    fake = FakeBigQuery(missing_dataset=True)
    with pytest.raises(ConfigError, match="proj.lineage does not exist"):
        BigQueryLineage(SECTION, FAST, client=fake).snapshots()
    assert fake.of("create_table") == []
