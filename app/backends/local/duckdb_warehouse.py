"""The warehouse and its lineage on an embedded DuckDB file: the local stand-in for BigQuery.

Schemas mirror the BigQuery datasets (``raw``, ``training``, ``snapshots``,
``lineage``). Every write is one transaction, so a failed load or transform
leaves nothing behind. Connections are short-lived: DuckDB lets one process
write a file at a time, and the pipeline's steps run in other processes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import duckdb
import pandas as pd

from app.core import sql
from app.core.config import DuckDBWarehouseConfig
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.records import IngestRecord, IngestResult, PipelineResult, SnapshotInfo
from app.core.schema import RAW_SCHEMA, Column, require_raw_frame

_DUCK_TYPES = {
    "FLOAT64": "DOUBLE",
    "INT64": "BIGINT",
    "STRING": "VARCHAR",
    "TIMESTAMP": "TIMESTAMP",
    "BOOL": "BOOLEAN",
}
_LOCK_WAIT_SECONDS = 60.0


def _ddl(columns: tuple[Column, ...]) -> str:
    return ",\n  ".join(
        f"{c.name} {_DUCK_TYPES[c.bq_type]}{' NOT NULL' if c.mode == 'REQUIRED' else ''}"
        for c in columns
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_HASH_BATCH = 50_000


def table_hash(
    con: duckdb.DuckDBPyConnection, table: str, *, stored_in_order: bool = False
) -> tuple[str, int, int]:
    """(content hash, rows, frauds) of a training-shaped table, read in batches.

    Rows are hashed one by one in ``txn_id`` order, so the hash depends on the
    content only, not on how it was stored or batched. ``stored_in_order``: the table
    was just written in that order, and a scan returns rows in insertion order
    (DuckDB's ``preserve_insertion_order``), so sorting again would only cost time.
    """
    order = "" if stored_in_order else " ORDER BY txn_id"
    relation = con.sql(f"SELECT * FROM {table}{order}")
    digest = hashlib.sha256(",".join(relation.columns).encode())
    rows = frauds = 0
    for batch in relation.to_arrow_reader(_HASH_BATCH):
        part = batch.to_pandas()
        digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        rows += len(part)
        frauds += int(part["label"].sum())
    return digest.hexdigest(), rows, frauds


class _DuckDBFile:
    """One DuckDB file, its schema, and short-lived connections to it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_config(cls, section: DuckDBWarehouseConfig, _backends: object) -> Self:
        return cls(section.path)

    # -- connections ----------------------------------------------------------

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                # Another process holds the file; writes are short, so wait for it.
                if time.monotonic() > deadline:
                    raise BackendUnavailableError(
                        f"warehouse {self.path.name} is locked by another process"
                    ) from exc
                time.sleep(0.2)
        try:
            con.execute("SET threads TO 2")
            self._ensure_schema(con)
            yield con
        finally:
            con.close()

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        # The DDL below costs tens of milliseconds a connection even when it changes
        # nothing; the newest column it adds says whether it has run on this file.
        ready = con.execute(
            "SELECT COUNT(*) FROM duckdb_columns() WHERE schema_name = 'lineage' "
            "AND table_name = 'training_build' AND column_name = 'query_hash'"
        ).fetchall()
        if ready[0][0]:
            return
        con.execute(
            f"""
            CREATE SCHEMA IF NOT EXISTS raw;
            CREATE SCHEMA IF NOT EXISTS training;
            CREATE SCHEMA IF NOT EXISTS snapshots;
            CREATE SCHEMA IF NOT EXISTS lineage;
            CREATE TABLE IF NOT EXISTS raw.transactions (
              {_ddl(RAW_SCHEMA)}
            );
            CREATE TABLE IF NOT EXISTS raw.ingests (
              ingest_id VARCHAR PRIMARY KEY,
              source_object VARCHAR NOT NULL,
              content_hash VARCHAR NOT NULL UNIQUE,
              time_offset DOUBLE NOT NULL,
              rows BIGINT NOT NULL,
              loaded_at TIMESTAMP NOT NULL
            );
            CREATE TABLE IF NOT EXISTS lineage.snapshots (
              snapshot_id VARCHAR PRIMARY KEY,
              table_name VARCHAR NOT NULL,
              source_ingest_id VARCHAR NOT NULL UNIQUE,
              source_object VARCHAR NOT NULL,
              row_count BIGINT NOT NULL,
              fraud_count BIGINT NOT NULL,
              content_hash VARCHAR NOT NULL,
              created_at VARCHAR NOT NULL
            );
            CREATE TABLE IF NOT EXISTS lineage.training_runs (
              run_name VARCHAR PRIMARY KEY,
              snapshot_id VARCHAR NOT NULL,
              deployed BOOLEAN NOT NULL,
              gate_reason VARCHAR NOT NULL,
              metrics VARCHAR NOT NULL,
              model_version VARCHAR,
              finished_at VARCHAR NOT NULL
            );
            -- The build that training.transactions (a view) reads; one row, or none yet.
            CREATE TABLE IF NOT EXISTS lineage.training_build (
              table_name VARCHAR NOT NULL,
              build_seq BIGINT NOT NULL,
              row_count BIGINT NOT NULL,
              built_at VARCHAR NOT NULL,
              -- What it was built from: the raw table's ingests and the query text.
              raw_ingests BIGINT NOT NULL,
              query_hash VARCHAR NOT NULL
            );
            -- Added after the first release: homes made before it get the columns too.
            ALTER TABLE raw.ingests ADD COLUMN IF NOT EXISTS generation BIGINT DEFAULT 0;
            ALTER TABLE lineage.training_runs ADD COLUMN IF NOT EXISTS steps VARCHAR DEFAULT '{{}}';
            """
        )

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect(write=True) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _snapshot_table(self, con: duckdb.DuckDBPyConnection, snapshot_id: str) -> str:
        # fetchall: a half-read result would block the next statement on this connection.
        rows = con.execute(
            "SELECT table_name FROM lineage.snapshots WHERE snapshot_id = ?", [snapshot_id]
        ).fetchall()
        if not rows:
            raise NotFoundError(f"snapshot {snapshot_id!r} does not exist")
        return str(rows[0][0])


class DuckDBWarehouse(_DuckDBFile):
    # -- raw ------------------------------------------------------------------

    def load_raw(
        self,
        frame: pd.DataFrame,
        *,
        ingest_id: str,
        source_object: str,
        content_hash: str,
        generation: int = 0,
    ) -> IngestResult:
        require_raw_frame(frame, source_object)
        # DuckDB scans the frame's columns in place (the INSERT names the ones it takes):
        # no per-row Python, no copy of the frame.
        staged = frame
        with self._transaction() as con:
            # Content, not name, decides: the same bytes under another name add nothing.
            known = con.execute(
                "SELECT ingest_id FROM raw.ingests WHERE content_hash = ?", [content_hash]
            ).fetchall()
            if known:
                return IngestResult(str(known[0][0]), source_object, 0, True, content_hash)
            # Each file's Time starts at its own zero: place it after everything loaded.
            ((offset,),) = con.execute(
                "SELECT COALESCE(MAX(event_time) + 1, 0)::DOUBLE FROM raw.transactions"
            ).fetchall()
            loaded_at = datetime.now(UTC).replace(tzinfo=None)
            select = {
                "ingest_id": "$ingest_id",
                "source_object": "$source_object",
                "event_time": "source_time + $offset",
                "loaded_at": "$loaded_at",
            }
            con.register("staged", staged)
            con.execute(
                f"""
                INSERT INTO raw.transactions ({", ".join(c.name for c in RAW_SCHEMA)})
                SELECT {", ".join(select.get(c.name, c.name) for c in RAW_SCHEMA)} FROM staged
                """,
                {
                    "ingest_id": ingest_id,
                    "source_object": source_object,
                    "offset": offset,
                    "loaded_at": loaded_at,
                },
            )
            con.unregister("staged")
            con.execute(
                "INSERT INTO raw.ingests (ingest_id, source_object, content_hash, time_offset, "
                "rows, loaded_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    ingest_id,
                    source_object,
                    content_hash,
                    offset,
                    len(staged),
                    loaded_at,
                    generation,
                ],
            )
        return IngestResult(ingest_id, source_object, len(staged), False, content_hash)

    # -- training -------------------------------------------------------------

    def build_training_table(self) -> int:
        """A new training build, in ``txn_id`` order; ``training.transactions`` reads it.

        Each build is its own table, never written again once made, so the snapshot of
        it is the build itself, adopted under the snapshot's name: no copy, as
        BigQuery's ``CREATE SNAPSHOT TABLE ... CLONE`` makes none. A build that no
        snapshot adopted is dropped when the next one replaces it. Raw rows only come
        with a new ingest, so a build from the same ingests and the same query is
        current: a transform run again returns it and changes nothing.
        """
        query = sql.render("training", {"raw.transactions": "raw.transactions"}, "duckdb")
        query_hash = hashlib.sha256(query.encode()).hexdigest()
        with self._transaction() as con:
            previous = con.execute(
                "SELECT table_name, build_seq, row_count, raw_ingests, query_hash "
                "FROM lineage.training_build"
            ).fetchall()
            ((ingests,),) = con.execute("SELECT COUNT(*) FROM raw.ingests").fetchall()
            if previous and tuple(previous[0][3:]) == (ingests, query_hash):
                return int(previous[0][2])
            seq = (int(previous[0][1]) if previous else 0) + 1
            build = f"snapshots.build_{seq:06d}"
            # Ordered as written: the snapshot's hash then reads it without sorting again.
            con.execute(f"CREATE TABLE {build} AS SELECT * FROM ({query}) ORDER BY txn_id")
            ((rows,),) = con.execute(f"SELECT COUNT(*) FROM {build}").fetchall()
            # A home made before builds existed keeps the training table as a table.
            legacy = con.execute(
                "SELECT COUNT(*) FROM duckdb_tables() "
                "WHERE schema_name = 'training' AND table_name = 'transactions'"
            ).fetchall()
            if legacy[0][0]:
                con.execute("DROP TABLE training.transactions")
            con.execute(f"CREATE OR REPLACE VIEW training.transactions AS SELECT * FROM {build}")
            if previous and not self._adopted(con, str(previous[0][0])):
                con.execute(f"DROP TABLE IF EXISTS {previous[0][0]}")
            con.execute("DELETE FROM lineage.training_build")
            con.execute(
                "INSERT INTO lineage.training_build VALUES (?, ?, ?, ?, ?, ?)",
                [build, seq, rows, _now(), ingests, query_hash],
            )
        return int(rows)

    @staticmethod
    def _adopted(con: duckdb.DuckDBPyConnection, table: str) -> bool:
        found = con.execute(
            "SELECT COUNT(*) FROM lineage.snapshots WHERE table_name = ?", [table]
        ).fetchall()
        return bool(found[0][0])

    # -- snapshots ------------------------------------------------------------

    def snapshot_training(self, *, ingest_id: str, source_object: str) -> SnapshotInfo:
        with self._transaction() as con:
            existing = con.execute(
                "SELECT * FROM lineage.snapshots WHERE source_ingest_id = ?", [ingest_id]
            ).fetchone()
            if existing:
                return _snapshot_info(existing)
            seq_row = con.execute("SELECT COUNT(*) FROM lineage.snapshots").fetchone()
            seq = (int(seq_row[0]) if seq_row else 0) + 1
            current = con.execute("SELECT table_name FROM lineage.training_build").fetchall()
            build = str(current[0][0]) if current else None
            if build is not None and not self._adopted(con, build):
                # The current build, frozen as it is: it is renamed, never copied.
                staging, adopt = build, True
            else:
                # Already some snapshot's table (a second snapshot with no transform
                # between), or a home whose training table predates builds: copy it.
                staging, adopt = f"snapshots.staging_{seq:04d}", False
                con.execute(
                    f"CREATE OR REPLACE TABLE {staging} AS "
                    "SELECT * FROM training.transactions ORDER BY txn_id"
                )
            content_hash, rows, frauds = table_hash(con, staging, stored_in_order=True)
            if rows == 0:
                raise InvalidInputError("training table is empty: nothing to snapshot")
            snapshot_id = f"snap_{seq:04d}_{content_hash[:8]}"
            table = f"snapshots.{snapshot_id}"
            con.execute(f"ALTER TABLE {staging} RENAME TO {snapshot_id}")
            if adopt:
                con.execute(
                    f"CREATE OR REPLACE VIEW training.transactions AS SELECT * FROM {table}"
                )
                con.execute("UPDATE lineage.training_build SET table_name = ?", [table])
            info = SnapshotInfo(
                snapshot_id=snapshot_id,
                table=table,
                source_ingest_id=ingest_id,
                source_object=source_object,
                row_count=rows,
                fraud_count=frauds,
                content_hash=content_hash,
                created_at=_now(),
            )
            con.execute(
                "INSERT INTO lineage.snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    info.snapshot_id,
                    info.table,
                    info.source_ingest_id,
                    info.source_object,
                    info.row_count,
                    info.fraud_count,
                    info.content_hash,
                    info.created_at,
                ],
            )
        return info

    def read_snapshot(self, snapshot_id: str) -> pd.DataFrame:
        with self._connect() as con:
            table = self._snapshot_table(con, snapshot_id)
            return con.execute(f"SELECT * FROM {table} ORDER BY txn_id").df()

    def snapshot_content_hash(self, snapshot_id: str) -> str:
        with self._connect() as con:
            return table_hash(con, self._snapshot_table(con, snapshot_id))[0]

    def latest_card_features(self, snapshot_id: str) -> pd.DataFrame:
        with self._connect() as con:
            table = self._snapshot_table(con, snapshot_id)
            query = sql.render("latest_card_features", {"snapshot.training": table}, "duckdb")
            return con.execute(query).df()

    def table_counts(self) -> dict[str, int]:
        with self._connect() as con:
            counts = {}
            for table in ("raw.transactions", "raw.ingests", "lineage.snapshots"):
                row = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
                counts[table] = int(row[0]) if row else 0
            exists = con.execute(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = 'training' AND table_name = 'transactions'"
            ).fetchone()
            if exists and exists[0]:
                row = con.execute("SELECT COUNT(*) FROM training.transactions").fetchone()
                counts["training.transactions"] = int(row[0]) if row else 0
            else:
                counts["training.transactions"] = 0
        return counts


class DuckDBLineage(_DuckDBFile):
    """The lineage tables that :class:`DuckDBWarehouse` writes, read by id and "latest"."""

    def ingest_by_hash(self, content_hash: str) -> IngestRecord | None:
        return self._ingest("content_hash = ?", [content_hash])

    def ingest_by_object(self, source_object: str, generation: int) -> IngestRecord | None:
        return self._ingest("source_object = ? AND generation = ?", [source_object, generation])

    def _ingest(self, where: str, params: list[object]) -> IngestRecord | None:
        with self._connect() as con:
            rows = con.execute(
                "SELECT ingest_id, source_object, content_hash, rows, loaded_at, generation "
                f"FROM raw.ingests WHERE {where} ORDER BY loaded_at LIMIT 1",
                params,
            ).fetchall()
        if not rows:
            return None
        row = rows[0]
        return IngestRecord(
            ingest_id=str(row[0]),
            source_object=str(row[1]),
            content_hash=str(row[2]),
            rows=int(row[3]),
            loaded_at=row[4].replace(tzinfo=UTC).isoformat(timespec="seconds"),
            generation=int(row[5] or 0),
        )

    def snapshot(self, snapshot_id: str) -> SnapshotInfo:
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM lineage.snapshots WHERE snapshot_id = ?", [snapshot_id]
            ).fetchone()
        if row is None:
            raise NotFoundError(f"snapshot {snapshot_id!r} does not exist")
        return _snapshot_info(row)

    def snapshot_for_ingest(self, ingest_id: str) -> SnapshotInfo | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM lineage.snapshots WHERE source_ingest_id = ?", [ingest_id]
            ).fetchone()
        return None if row is None else _snapshot_info(row)

    def latest_snapshot(self) -> SnapshotInfo | None:
        found = self._snapshots(latest_only=True)
        return found[0] if found else None

    def snapshots(self) -> list[SnapshotInfo]:
        return self._snapshots(latest_only=False)

    def _snapshots(self, *, latest_only: bool) -> list[SnapshotInfo]:
        # The sequence number in the id is the snapshot order (ids are ours to parse here).
        order = "CAST(split_part(snapshot_id, '_', 2) AS BIGINT)"
        query = f"SELECT * FROM lineage.snapshots ORDER BY {order}"
        if latest_only:
            query = f"SELECT * FROM lineage.snapshots ORDER BY {order} DESC LIMIT 1"
        with self._connect() as con:
            rows = con.execute(query).fetchall()
        return [_snapshot_info(r) for r in rows]

    def latest_training_run(self) -> PipelineResult | None:
        runs = self.training_runs()
        return runs[-1] if runs else None

    def record_training_run(self, result: PipelineResult) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO lineage.training_runs (run_name, snapshot_id, deployed, "
                "gate_reason, metrics, model_version, finished_at, steps) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    result.run_name,
                    result.snapshot_id,
                    result.deployed,
                    result.gate_reason,
                    json.dumps(dict(result.metrics), sort_keys=True),
                    result.model_version,
                    _now(),
                    json.dumps(dict(result.steps), sort_keys=True),
                ],
            )

    def training_runs(self, snapshot_id: str | None = None) -> list[PipelineResult]:
        query = (
            "SELECT run_name, snapshot_id, deployed, gate_reason, metrics, model_version, steps "
            "FROM lineage.training_runs"
        )
        params: list[str] = []
        if snapshot_id is not None:
            query += " WHERE snapshot_id = ?"
            params.append(snapshot_id)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY finished_at, run_name", params).fetchall()
        return [
            PipelineResult(
                run_name=r[0],
                snapshot_id=r[1],
                deployed=bool(r[2]),
                gate_reason=r[3],
                metrics=json.loads(r[4]),
                model_version=r[5],
                steps=json.loads(r[6] or "{}"),
            )
            for r in rows
        ]


def _snapshot_info(row: tuple[object, ...]) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=str(row[0]),
        table=str(row[1]),
        source_ingest_id=str(row[2]),
        source_object=str(row[3]),
        row_count=int(row[4]),  # type: ignore[call-overload]
        fraud_count=int(row[5]),  # type: ignore[call-overload]
        content_hash=str(row[6]),
        created_at=str(row[7]),
    )
