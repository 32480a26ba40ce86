"""The warehouse and its lineage on BigQuery: the GCP home's :class:`DuckDBWarehouse`.

The stack (``components/warehouse_datasets.py``) creates the datasets and the raw and
training tables from :mod:`app.core.schema`; the lineage tables (ingests, snapshots,
training runs) are this module's, defined below and created here on first use, in a
dataset of their own that does not expire: a snapshot goes after
``snapshot_expiration_days``, the record of what it held and what trained on it stays.

Every write that must be atomic is one multi-statement transaction:

- **load**: the frame goes into a staging table of its own (a load job with an explicit
  schema), then one transaction writes the ingest record and appends the rows, or does
  nothing when the content is known. The staged rows carry the ingest's values
  (id, hash, load time), so the transaction needs no query parameters and can
  find the record it wrote by its content hash and load time.
- **transform**: the training table is emptied and refilled in one transaction rather
  than replaced, so the stack's table (its schema, descriptions, clustering and grants)
  stays the one it created.

A snapshot is a ``CREATE SNAPSHOT TABLE ... CLONE`` of the training table; its hash is
computed from the snapshot itself (it cannot change under the read), then it gets its
labels and expiration and its lineage row.

Every client call has the call policy's timeout and retry and runs inside
:func:`~app.backends.gcp.calls.seam`; a job wait gets the policy's deadline, the
budget of the whole call rather than of one attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.cloud import bigquery

from app.backends.gcp.calls import CallPolicy, seam
from app.core import sql
from app.core.config import BigQueryWarehouseConfig
from app.core.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from app.core.ports import Services
from app.core.records import IngestRecord, IngestResult, PipelineResult, SnapshotInfo
from app.core.schema import (
    INGESTS,
    LINEAGE_TABLES,
    RAW_FRAME_COLUMNS,
    RAW_SCHEMA,
    SNAPSHOTS,
    TRAINING_RUNS,
    TRAINING_SCHEMA,
    Column,
    require_raw_frame,
)

# The stack's tables (components/warehouse_datasets.py names them).
RAW_TABLE = "transactions"
TRAINING_TABLE = "transactions"

# The lineage tables' schemas are written once, with the others, in app/core/schema.py.

# What load_raw takes from the frame; the rest of raw is computed while loading.
FRAME_COLUMNS = RAW_FRAME_COLUMNS

# The staging table: raw without event_time (computed in the transaction), plus what the
# transaction writes into the ingest record. All NULLABLE: raw's REQUIRED modes are
# enforced by the transaction's INSERT, so a bad row fails inside it and takes the
# ingest record with it.
STAGING_SCHEMA: tuple[Column, ...] = (
    *(
        Column(c.name, c.bq_type, c.description, "NULLABLE")
        for c in RAW_SCHEMA
        if c.name != "event_time"
    ),
    Column("content_hash", "STRING", "SHA-256 of the landed file", "NULLABLE"),
    Column("generation", "INT64", "The object's generation", "NULLABLE"),
)
STAGING_EXPIRATION = timedelta(days=1)  # a staging table a killed load left behind

_ARROW_TYPES: dict[str, pa.DataType] = {
    "FLOAT64": pa.float64(),
    "INT64": pa.int64(),
    "STRING": pa.string(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "BOOL": pa.bool_(),
}
# Hashing converts every page to the same dtypes, whatever its values: numpy's int64
# would turn float64 in a page that holds a NULL, and change the hash with the paging.
_HASH_TYPES: dict[pa.DataType, Any] = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}

_T = TypeVar("_T")

_TABLE_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_LABEL_MAX = 63
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")


def schema_fields(columns: Sequence[Column]) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(c.name, c.bq_type, mode=c.mode, description=c.description)
        for c in columns
    ]


def label_value(text: str) -> str:
    """``text`` as a BigQuery label value: at most 63 of ``[a-z0-9_-]``.

    A value that had to change ends with a digest of the original, so two names that
    differ only in what was replaced or cut off do not get the same label.
    """
    clean = _LABEL_INVALID.sub("-", text.lower())
    if clean == text and len(clean) <= _LABEL_MAX:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[: _LABEL_MAX - len(digest) - 1]}-{digest}"


def _quote(*parts: str) -> str:
    path = ".".join(parts)
    if "`" in path or "\n" in path:
        raise ConfigError(f"{path!r} is not a BigQuery table path")
    return f"`{path}`"


class _BigQuery:
    """One project's warehouse datasets, one client, and the calls made through it."""

    def __init__(
        self, section: BigQueryWarehouseConfig, policy: CallPolicy, client: Any = None
    ) -> None:
        self.section = section
        self.policy = policy
        self._client = client
        self._lock = threading.Lock()
        self._lineage_ready = False
        p = section.project
        self.raw_table = _quote(p, section.raw_dataset, RAW_TABLE)
        self.training_table = _quote(p, section.training_dataset, TRAINING_TABLE)
        self.ingests_table = _quote(p, section.lineage_dataset, INGESTS)
        self.snapshots_table = _quote(p, section.lineage_dataset, SNAPSHOTS)
        self.runs_table = _quote(p, section.lineage_dataset, TRAINING_RUNS)

    @classmethod
    def from_config(cls, section: BigQueryWarehouseConfig, backends: Services) -> Self:
        return cls(section, CallPolicy.from_config(backends.config.gcp_calls))

    # -- the client and its calls --------------------------------------------------

    def _bq(self) -> Any:
        with self._lock:
            if self._client is None:
                options = (
                    {"api_endpoint": self.section.api_endpoint}
                    if self.section.api_endpoint
                    else None
                )
                with seam("creating the BigQuery client"):
                    self._client = bigquery.Client(
                        project=self.section.project,
                        location=self.section.location,
                        client_options=options,
                    )
            return self._client

    def _job(self, query: str, params: Sequence[Any]) -> tuple[Any, Any]:
        """Run ``query`` to its end: (the job, its rows). Call inside :func:`seam`."""
        p = self.policy
        job = self._bq().query(
            query,
            job_config=bigquery.QueryJobConfig(query_parameters=list(params)),
            timeout=p.timeout,
            retry=p.retry(),
            # A job that failed for a transient reason is run again, within the deadline;
            # every script here is idempotent, so a second run changes nothing.
            job_retry=p.retry(),
        )
        return job, job.result(timeout=p.deadline, retry=p.retry())

    def _rows(self, query: str, params: Sequence[Any], what: str) -> list[Any]:
        with seam(what):
            _, rows = self._job(query, params)
            return list(rows)

    def _dml(self, query: str, params: Sequence[Any], what: str) -> int:
        with seam(what):
            job, _ = self._job(query, params)
            return int(job.num_dml_affected_rows or 0)

    def _frame(self, query: str, params: Sequence[Any], what: str) -> pd.DataFrame:
        with seam(what):
            _, rows = self._job(query, params)
            table = rows.to_arrow(create_bqstorage_client=False, timeout=self.policy.timeout)
        return table.to_pandas()

    def _batches(self, query: str, what: str) -> Iterator[pa.RecordBatch]:
        # The seam stays open while pages are read: each page is a call of its own.
        with seam(what):
            _, rows = self._job(query, ())
            yield from rows.to_arrow_iterable(bqstorage_client=None, timeout=self.policy.timeout)

    def _table_ref(self, dataset: str, table: str) -> str:
        return f"{self.section.project}.{dataset}.{table}"

    def _delete_table(self, ref: str, what: str) -> None:
        p = self.policy
        with seam(what):
            self._bq().delete_table(ref, not_found_ok=True, timeout=p.timeout, retry=p.retry())

    # -- lineage tables ----------------------------------------------------------------

    def _ensure_lineage(self) -> None:
        """Create the lineage tables that are missing, once per instance.

        One list call on every first use; creating needs the lineage dataset's
        dataEditor, which only the orchestration account (the writer) holds.
        """
        if self._lineage_ready:
            return
        p = self.policy
        dataset = f"{self.section.project}.{self.section.lineage_dataset}"
        try:
            with seam(f"listing the lineage tables in {dataset}"):
                existing = {
                    t.table_id
                    for t in self._bq().list_tables(dataset, timeout=p.timeout, retry=p.retry())
                }
        except NotFoundError as exc:
            raise ConfigError(
                f"lineage dataset {dataset} does not exist: the stack makes it"
            ) from exc
        for name, columns in LINEAGE_TABLES.items():
            if name in existing:
                continue
            table = bigquery.Table(
                self._table_ref(self.section.lineage_dataset, name), schema=schema_fields(columns)
            )
            with seam(f"creating lineage table {dataset}.{name}"):
                self._bq().create_table(table, exists_ok=True, timeout=p.timeout, retry=p.retry())
        self._lineage_ready = True

    def _ingest(self, where: str, params: Sequence[Any]) -> tuple[IngestRecord, datetime] | None:
        self._ensure_lineage()
        rows = self._rows(
            "SELECT ingest_id, source_object, content_hash, row_count, loaded_at, generation "
            f"FROM {self.ingests_table} WHERE {where} ORDER BY loaded_at LIMIT 1",
            params,
            "reading the ingest lineage",
        )
        if not rows:
            return None
        row = rows[0]
        record = IngestRecord(
            ingest_id=str(row["ingest_id"]),
            source_object=str(row["source_object"]),
            content_hash=str(row["content_hash"]),
            rows=int(row["row_count"]),
            loaded_at=_iso(row["loaded_at"]),
            generation=int(row["generation"]),
        )
        return record, row["loaded_at"]

    def _snapshot_rows(self, where: str, params: Sequence[Any], *, order: str = "") -> list[Any]:
        self._ensure_lineage()
        return self._rows(
            f"SELECT * FROM {self.snapshots_table} WHERE {where} {order}".strip(),
            params,
            "reading the snapshot lineage",
        )

    def _snapshot_ref(self, snapshot_id: str) -> str:
        if not _TABLE_ID.match(snapshot_id):
            raise NotFoundError(f"snapshot {snapshot_id!r} does not exist")
        return _quote(self.section.project, self.section.snapshot_dataset, snapshot_id)


class BigQueryWarehouse(_BigQuery):
    # -- raw ------------------------------------------------------------------------

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
        # Known content is not even uploaded; the transaction checks again.
        known = self._ingest("content_hash = @content_hash", [_param("content_hash", content_hash)])
        if known is not None:
            return IngestResult(known[0].ingest_id, source_object, 0, True, content_hash)

        staged = frame[list(FRAME_COLUMNS)].copy()
        staged["ingest_id"] = ingest_id
        staged["source_object"] = source_object
        staged["loaded_at"] = datetime.now(UTC)
        staged["content_hash"] = content_hash
        staged["generation"] = generation
        # A table per attempt: two attempts at one ingest never share staged rows.
        staging_id = f"_load_{uuid.uuid4().hex}"
        staging_ref = self._table_ref(self.section.raw_dataset, staging_id)
        self._create_staging(staging_ref)
        try:
            self._upload(staged, staging_ref)
            rows = self._rows(
                self._load_script(_quote(staging_ref)),
                (),
                f"appending {source_object} to {self.raw_table}",
            )
        finally:
            self._delete_table(staging_ref, f"dropping staging table {staging_ref}")
        owner, loaded_now = str(rows[0]["ingest_id"]), bool(rows[0]["loaded_now"])
        if loaded_now:
            return IngestResult(ingest_id, source_object, len(staged), False, content_hash)
        # Another load of the same content committed first.
        return IngestResult(owner, source_object, 0, True, content_hash)

    def _create_staging(self, ref: str) -> None:
        table = bigquery.Table(ref, schema=schema_fields(STAGING_SCHEMA))
        table.expires = datetime.now(UTC) + STAGING_EXPIRATION
        p = self.policy
        with seam(f"creating staging table {ref}"):
            self._bq().create_table(table, timeout=p.timeout, retry=p.retry())

    def _upload(self, staged: pd.DataFrame, ref: str) -> None:
        arrow_schema = pa.schema(
            [pa.field(c.name, _ARROW_TYPES[c.bq_type]) for c in STAGING_SCHEMA]
        )
        buffer = io.BytesIO()
        columns = [c.name for c in STAGING_SCHEMA]
        pq.write_table(
            pa.Table.from_pandas(staged[columns], schema=arrow_schema, preserve_index=False),
            buffer,
        )
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=schema_fields(STAGING_SCHEMA),
            # Truncate: an upload retried after a lost answer replaces, never doubles.
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        p = self.policy
        with seam(f"staging {len(staged)} rows in {ref}"):
            # load_table_from_file takes no retry: the policy's wraps the whole upload
            # (rewound each attempt) and the library's own upload retries are off.
            upload = p.retry()(self._bq().load_table_from_file)
            job = upload(
                buffer, ref, rewind=True, num_retries=0, job_config=config, timeout=p.timeout
            )
            job.result(timeout=p.deadline, retry=p.retry())

    def _load_script(self, staging: str) -> str:
        names = [c.name for c in RAW_SCHEMA]
        values = ", ".join(
            "s.source_time + i.time_offset AS event_time" if n == "event_time" else f"s.{n}"
            for n in names
        )
        record = (
            f"SELECT ANY_VALUE(content_hash) AS content_hash, "
            f"ANY_VALUE(loaded_at) AS loaded_at FROM {staging}"
        )
        return f"""
BEGIN TRANSACTION;
-- Content, not name, decides: the same bytes under another name add nothing.
IF NOT EXISTS (
  SELECT 1 FROM {self.ingests_table} AS i JOIN ({record}) AS s ON i.content_hash = s.content_hash
) THEN
  -- Each file's Time starts at its own zero: place it after everything loaded.
  INSERT INTO {self.ingests_table}
    (ingest_id, source_object, content_hash, generation, time_offset, row_count, loaded_at)
  SELECT s.ingest_id, s.source_object, s.content_hash, s.generation, o.time_offset,
    s.row_count, s.loaded_at
  FROM (
    SELECT ANY_VALUE(ingest_id) AS ingest_id, ANY_VALUE(source_object) AS source_object,
      ANY_VALUE(content_hash) AS content_hash, ANY_VALUE(generation) AS generation,
      COUNT(*) AS row_count, ANY_VALUE(loaded_at) AS loaded_at
    FROM {staging}
  ) AS s
  CROSS JOIN (
    SELECT COALESCE(MAX(event_time) + 1, 0) AS time_offset FROM {self.raw_table}
  ) AS o;
  INSERT INTO {self.raw_table} ({", ".join(names)})
  SELECT {values}
  FROM {staging} AS s
  JOIN {self.ingests_table} AS i ON i.content_hash = s.content_hash AND i.loaded_at = s.loaded_at;
END IF;
COMMIT TRANSACTION;
-- Who owns this content now: this load (its load time) or one before it.
SELECT i.ingest_id, i.loaded_at = s.loaded_at AS loaded_now
FROM {self.ingests_table} AS i JOIN ({record}) AS s ON i.content_hash = s.content_hash
ORDER BY i.loaded_at
LIMIT 1;
"""

    # -- training -------------------------------------------------------------------

    def build_training_table(self) -> int:
        query = sql.render("training", {"raw.transactions": self.raw_table}, "bigquery")
        names = ", ".join(c.name for c in TRAINING_SCHEMA)
        script = f"""
BEGIN TRANSACTION;
DELETE FROM {self.training_table} WHERE TRUE;
INSERT INTO {self.training_table} ({names})
{query};
COMMIT TRANSACTION;
SELECT COUNT(*) AS n FROM {self.training_table};
"""
        rows = self._rows(script, (), f"rebuilding {self.training_table}")
        return int(rows[0]["n"]) if rows else 0

    # -- snapshots ------------------------------------------------------------------

    def snapshot_training(self, *, ingest_id: str, source_object: str) -> SnapshotInfo:
        ingest = [_param("ingest_id", ingest_id)]
        existing = self._snapshot_rows("source_ingest_id = @ingest_id", ingest)
        if existing:
            return _snapshot_info(existing[0])
        (row,) = self._rows(
            f"SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM {self.snapshots_table}",
            (),
            "numbering the next snapshot",
        )
        seq = int(row["seq"])
        # Named before its content is known, by the ingest it follows: a retry of the same
        # snapshot finds the table its failed attempt made (and its hash is the table's).
        snapshot_id = f"snap_{seq:04d}_{hashlib.sha256(ingest_id.encode()).hexdigest()[:8]}"
        ref = self._table_ref(self.section.snapshot_dataset, snapshot_id)
        # A table already there was made by a failed attempt at this same snapshot: it is
        # the clone we want.
        with contextlib.suppress(ConflictError):
            self._rows(
                f"CREATE SNAPSHOT TABLE {_quote(ref)} CLONE {self.training_table}",
                (),
                f"snapshotting {self.training_table} as {ref}",
            )
        content_hash, rows, frauds = self._hash(_quote(ref), f"hashing snapshot {ref}")
        if rows == 0:
            self._delete_table(ref, f"dropping empty snapshot {ref}")
            raise InvalidInputError("training table is empty: nothing to snapshot")
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            table=ref,
            source_ingest_id=ingest_id,
            source_object=source_object,
            row_count=rows,
            fraud_count=frauds,
            content_hash=content_hash,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._label(info, self._generation_of(ingest_id))
        recorded = self._dml(
            f"INSERT INTO {self.snapshots_table} "
            "(snapshot_id, seq, table_name, source_ingest_id, source_object, row_count, "
            "fraud_count, content_hash, created_at) "
            "SELECT @snapshot_id, @seq, @table_name, @ingest_id, @source_object, @row_count, "
            "@fraud_count, @content_hash, @created_at FROM UNNEST([1]) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.snapshots_table} "
            "WHERE source_ingest_id = @ingest_id OR seq = @seq)",
            [
                _param("snapshot_id", info.snapshot_id),
                _param("seq", seq, "INT64"),
                _param("table_name", info.table),
                *ingest,
                _param("source_object", source_object),
                _param("row_count", rows, "INT64"),
                _param("fraud_count", frauds, "INT64"),
                _param("content_hash", content_hash),
                _param("created_at", datetime.fromisoformat(info.created_at), "TIMESTAMP"),
            ],
            f"recording snapshot {snapshot_id}",
        )
        if recorded:
            return info
        # Another snapshot run recorded first: keep its snapshot, drop ours.
        self._delete_table(ref, f"dropping superseded snapshot {ref}")
        winner = self._snapshot_rows("source_ingest_id = @ingest_id", ingest)
        if winner:
            return _snapshot_info(winner[0])
        raise ConflictError(f"snapshot {seq} was taken by another ingest meanwhile; retry")

    def _generation_of(self, ingest_id: str) -> int:
        """The landed object's generation that the ingest loaded (0 when unknown)."""
        rows = self._rows(
            f"SELECT generation FROM {self.ingests_table} WHERE ingest_id = @ingest_id",
            [_param("ingest_id", ingest_id)],
            f"reading the generation of ingest {ingest_id}",
        )
        return int(rows[0]["generation"] or 0) if rows else 0

    def _label(self, info: SnapshotInfo, generation: int) -> None:
        """The snapshot's lineage on the table itself, and its expiration.

        Set on the table after the clone (tables.patch), which BigQuery allows on a
        snapshot for exactly these fields.
        """
        p = self.policy
        table = bigquery.Table(info.table)
        table.labels = {
            "source_object": label_value(info.source_object),
            "source_ingest": label_value(info.source_ingest_id),
            "source_generation": str(generation),
            "row_count": str(info.row_count),
            "fraud_count": str(info.fraud_count),
            # 128 bits of the hash: a label holds 63 characters, lineage has all 64.
            "content_hash": info.content_hash[:32],
        }
        table.description = (
            f"Training table after ingest {info.source_ingest_id} of {info.source_object}: "
            f"{info.row_count} rows, content hash {info.content_hash}"
        )
        table.expires = datetime.now(UTC) + timedelta(days=self.section.snapshot_expiration_days)
        with seam(f"labelling snapshot {info.table}"):
            self._bq().update_table(
                table, ["labels", "description", "expires"], timeout=p.timeout, retry=p.retry()
            )

    def _hash(self, table: str, what: str) -> tuple[str, int, int]:
        """(content hash, rows, frauds) of a training-shaped table, read page by page.

        Rows are hashed one by one in ``txn_id`` order, with one dtype per column
        whatever a page holds, so the hash depends on the content only.
        """
        digest: Any = None
        rows = frauds = 0
        for batch in self._batches(f"SELECT * FROM {table} ORDER BY txn_id", what):
            if digest is None:
                digest = hashlib.sha256(",".join(batch.schema.names).encode())
            part = batch.to_pandas(types_mapper=_HASH_TYPES.get)
            digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
            rows += len(part)
            frauds += int(part["label"].sum())
        if digest is None:  # no pages at all: an empty table
            digest = hashlib.sha256(",".join(c.name for c in TRAINING_SCHEMA).encode())
        return digest.hexdigest(), rows, frauds

    def read_snapshot(self, snapshot_id: str) -> pd.DataFrame:
        # The table itself, not its lineage row: the training account reads snapshots
        # and nothing else.
        table = self._snapshot_ref(snapshot_id)
        return self._known(
            snapshot_id,
            lambda: self._frame(
                f"SELECT * FROM {table} ORDER BY txn_id", (), f"reading snapshot {snapshot_id}"
            ),
        )

    def snapshot_content_hash(self, snapshot_id: str) -> str:
        table = self._snapshot_ref(snapshot_id)
        return self._known(
            snapshot_id, lambda: self._hash(table, f"hashing snapshot {snapshot_id}")[0]
        )

    def latest_card_features(self, snapshot_id: str) -> pd.DataFrame:
        table = self._snapshot_ref(snapshot_id)
        query = sql.render("latest_card_features", {"snapshot.training": table}, "bigquery")
        return self._known(
            snapshot_id,
            lambda: self._frame(query, (), f"reading latest card features of {snapshot_id}"),
        )

    @staticmethod
    def _known(snapshot_id: str, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except NotFoundError as exc:
            raise NotFoundError(f"snapshot {snapshot_id!r} does not exist") from exc

    def table_counts(self) -> dict[str, int]:
        self._ensure_lineage()
        # The local home's names for the same tables (the ingests live in lineage here).
        (row,) = self._rows(
            f"SELECT (SELECT COUNT(*) FROM {self.raw_table}) AS raw_transactions, "
            f"(SELECT COUNT(*) FROM {self.ingests_table}) AS raw_ingests, "
            f"(SELECT COUNT(*) FROM {self.snapshots_table}) AS lineage_snapshots, "
            f"(SELECT COUNT(*) FROM {self.training_table}) AS training_transactions",
            (),
            "counting warehouse tables",
        )
        return {
            "raw.transactions": int(row["raw_transactions"]),
            "raw.ingests": int(row["raw_ingests"]),
            "lineage.snapshots": int(row["lineage_snapshots"]),
            "training.transactions": int(row["training_transactions"]),
        }


class BigQueryLineage(_BigQuery):
    """The lineage tables that :class:`BigQueryWarehouse` writes, read by id and "latest"."""

    def ingest_by_hash(self, content_hash: str) -> IngestRecord | None:
        found = self._ingest("content_hash = @content_hash", [_param("content_hash", content_hash)])
        return None if found is None else found[0]

    def ingest_by_object(self, source_object: str, generation: int) -> IngestRecord | None:
        found = self._ingest(
            "source_object = @source_object AND generation = @generation",
            [_param("source_object", source_object), _param("generation", generation, "INT64")],
        )
        return None if found is None else found[0]

    def snapshot(self, snapshot_id: str) -> SnapshotInfo:
        rows = self._snapshot_rows(
            "snapshot_id = @snapshot_id", [_param("snapshot_id", snapshot_id)]
        )
        if not rows:
            raise NotFoundError(f"snapshot {snapshot_id!r} does not exist")
        return _snapshot_info(rows[0])

    def snapshot_for_ingest(self, ingest_id: str) -> SnapshotInfo | None:
        rows = self._snapshot_rows(
            "source_ingest_id = @ingest_id", [_param("ingest_id", ingest_id)]
        )
        return _snapshot_info(rows[0]) if rows else None

    def latest_snapshot(self) -> SnapshotInfo | None:
        rows = self._snapshot_rows("TRUE", (), order="ORDER BY seq DESC LIMIT 1")
        return _snapshot_info(rows[0]) if rows else None

    def snapshots(self) -> list[SnapshotInfo]:
        return [_snapshot_info(r) for r in self._snapshot_rows("TRUE", (), order="ORDER BY seq")]

    def record_training_run(self, result: PipelineResult) -> None:
        self._ensure_lineage()
        columns = ("snapshot_id", "deployed", "gate_reason", "metrics", "model_version", "steps")
        # One statement: the run is recorded whole, and recording it again replaces it.
        self._dml(
            f"MERGE {self.runs_table} AS t "
            "USING (SELECT @run_name AS run_name, @snapshot_id AS snapshot_id, "
            "@deployed AS deployed, @gate_reason AS gate_reason, @metrics AS metrics, "
            "@model_version AS model_version, @steps AS steps, "
            "CURRENT_TIMESTAMP() AS finished_at) AS s "
            "ON t.run_name = s.run_name "
            "WHEN MATCHED THEN UPDATE SET "
            + ", ".join(f"{c} = s.{c}" for c in (*columns, "finished_at"))
            + " WHEN NOT MATCHED THEN INSERT (run_name, "
            + ", ".join((*columns, "finished_at"))
            + ") VALUES (s.run_name, "
            + ", ".join(f"s.{c}" for c in (*columns, "finished_at"))
            + ")",
            [
                _param("run_name", result.run_name),
                _param("snapshot_id", result.snapshot_id),
                _param("deployed", result.deployed, "BOOL"),
                _param("gate_reason", result.gate_reason),
                _param("metrics", json.dumps(dict(result.metrics), sort_keys=True)),
                _param("model_version", result.model_version),
                _param("steps", json.dumps(dict(result.steps), sort_keys=True)),
            ],
            f"recording training run {result.run_name}",
        )

    def training_runs(self, snapshot_id: str | None = None) -> list[PipelineResult]:
        self._ensure_lineage()
        where, params = "TRUE", []
        if snapshot_id is not None:
            where, params = "snapshot_id = @snapshot_id", [_param("snapshot_id", snapshot_id)]
        rows = self._rows(
            "SELECT run_name, snapshot_id, deployed, gate_reason, metrics, model_version, steps "
            f"FROM {self.runs_table} WHERE {where} ORDER BY finished_at, run_name",
            params,
            "reading the training runs",
        )
        return [
            PipelineResult(
                run_name=str(r["run_name"]),
                snapshot_id=str(r["snapshot_id"]),
                deployed=bool(r["deployed"]),
                gate_reason=str(r["gate_reason"]),
                metrics=json.loads(r["metrics"]),
                model_version=r["model_version"],
                steps=json.loads(r["steps"] or "{}"),
            )
            for r in rows
        ]

    def latest_training_run(self) -> PipelineResult | None:
        runs = self.training_runs()
        return runs[-1] if runs else None


def _param(
    name: str, value: str | int | float | bool | datetime | None, bq_type: str = "STRING"
) -> bigquery.ScalarQueryParameter:
    return bigquery.ScalarQueryParameter(name, bq_type, value)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _snapshot_info(row: Any) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=str(row["snapshot_id"]),
        table=str(row["table_name"]),
        source_ingest_id=str(row["source_ingest_id"]),
        source_object=str(row["source_object"]),
        row_count=int(row["row_count"]),
        fraud_count=int(row["fraud_count"]),
        content_hash=str(row["content_hash"]),
        created_at=_iso(row["created_at"]),
    )
