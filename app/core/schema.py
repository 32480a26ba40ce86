"""Column definitions shared by the loader, the SQL, the Pulumi tables and the model.

One definition: the app validates files against it and the Pulumi warehouse
component builds BigQuery table schemas from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.core.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

BqType = Literal["FLOAT64", "INT64", "STRING", "TIMESTAMP", "BOOL"]


@dataclass(frozen=True)
class Column:
    name: str
    bq_type: BqType
    description: str
    mode: Literal["REQUIRED", "NULLABLE"] = "REQUIRED"

    def bigquery_field(self) -> dict[str, str]:
        return {
            "name": self.name,
            "type": self.bq_type,
            "mode": self.mode,
            "description": self.description,
        }


PCA_COLUMNS: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))

# The Kaggle / ULB file, in its order.
KAGGLE_COLUMNS: tuple[str, ...] = ("Time", *PCA_COLUMNS, "Amount", "Class")
CARD_COLUMN = "card_number"

RAW_SCHEMA: tuple[Column, ...] = (
    Column("ingest_id", "STRING", "Source object name plus content hash of the landed file"),
    Column("source_object", "STRING", "Name of the landed object"),
    Column("source_line", "INT64", "1-based line number in the landed file"),
    Column("card_id", "STRING", "HMAC-SHA256 of the card number (never the number itself)"),
    Column("card_masked", "STRING", "First 6 and last 4 digits of the card number"),
    Column("source_time", "FLOAT64", "Time as in the file: seconds since the file's first row"),
    Column(
        "event_time",
        "FLOAT64",
        "Seconds on the platform's timeline: each file is placed after the latest loaded "
        "transaction (first file: event_time = Time)",
    ),
    *(Column(c, "FLOAT64", f"PCA component {c} of the original features") for c in PCA_COLUMNS),
    Column("amount", "FLOAT64", "Transaction amount"),
    Column("label", "INT64", "1 for fraud, 0 for legitimate (Class)"),
    Column("loaded_at", "TIMESTAMP", "When the row was loaded"),
)

# Point-in-time per-card features, defined once in sql/training.sql.
CARD_FEATURES: tuple[Column, ...] = (
    Column(
        "card_txn_count_1h", "INT64", "Card's transactions in the trailing hour, this one included"
    ),
    Column("card_txn_count_24h", "INT64", "Card's transactions in the trailing 24 hours"),
    Column("card_amount_sum_24h", "FLOAT64", "Card's summed amount over the trailing 24 hours"),
    Column("card_amount_avg_24h", "FLOAT64", "Card's mean amount over the trailing 24 hours"),
    Column("card_amount_max_24h", "FLOAT64", "Card's largest amount over the trailing 24 hours"),
    Column(
        "card_amount_zscore_24h",
        "FLOAT64",
        "How far this amount is from the card's trailing-24h mean, in standard deviations",
    ),
    Column(
        "secs_since_prev_txn",
        "FLOAT64",
        "Seconds since the card's previous transaction; NULL for its first",
        mode="NULLABLE",
    ),
)

MODEL_FEATURES: tuple[str, ...] = (*PCA_COLUMNS, "amount", *(c.name for c in CARD_FEATURES))

TRAINING_SCHEMA: tuple[Column, ...] = (
    Column("txn_id", "STRING", "Stable transaction id: ingest id and source line"),
    Column("card_id", "STRING", "HMAC-SHA256 of the card number"),
    Column("card_masked", "STRING", "First 6 and last 4 digits of the card number"),
    Column("event_time", "FLOAT64", "Seconds on the platform's timeline (see raw.event_time)"),
    *(Column(c, "FLOAT64", f"PCA component {c}") for c in PCA_COLUMNS),
    Column("amount", "FLOAT64", "Transaction amount"),
    *CARD_FEATURES,
    Column("label", "INT64", "1 for fraud, 0 for legitimate"),
)

# The feature view: one row per card, its latest transaction's features.
FEATURE_VIEW_SCHEMA: tuple[Column, ...] = (
    Column("card_id", "STRING", "Entity id: HMAC-SHA256 of the card number"),
    Column("card_masked", "STRING", "First 6 and last 4 digits"),
    Column("event_time", "FLOAT64", "Time of the card's latest transaction"),
    *(c for c in TRAINING_SCHEMA if c.name in MODEL_FEATURES),
    Column("snapshot_id", "STRING", "The training snapshot these features come from"),
    Column("feature_timestamp", "TIMESTAMP", "When these features were computed"),
)


# Lineage: what was loaded, snapshotted and trained. The BigQuery warehouse keeps these
# in its lineage dataset (no expiration: lineage outlives the snapshots it names).
INGESTS = "ingests"
SNAPSHOTS = "snapshots"
TRAINING_RUNS = "training_runs"

LINEAGE_TABLES: dict[str, tuple[Column, ...]] = {
    INGESTS: (
        Column("ingest_id", "STRING", "Source object name plus content hash"),
        Column("source_object", "STRING", "Name of the landed object"),
        Column("content_hash", "STRING", "SHA-256 of the landed file: content decides identity"),
        Column("generation", "INT64", "The object's generation that was loaded"),
        Column("time_offset", "FLOAT64", "Seconds added to the file's Time to give event_time"),
        Column("row_count", "INT64", "Rows loaded"),
        Column("loaded_at", "TIMESTAMP", "When the load ran (it also marks the rows it staged)"),
    ),
    SNAPSHOTS: (
        Column("snapshot_id", "STRING", "Snapshot id, also its table id in the snapshot dataset"),
        Column("seq", "INT64", "Snapshot order: 1 for the first"),
        Column("table_name", "STRING", "The snapshot table, project.dataset.table"),
        Column("source_ingest_id", "STRING", "The ingest whose load this snapshot follows"),
        Column("source_object", "STRING", "That ingest's landed object"),
        Column("row_count", "INT64", "Rows in the snapshot"),
        Column("fraud_count", "INT64", "Fraud rows in the snapshot"),
        Column("content_hash", "STRING", "Hash of the snapshot's rows in txn_id order"),
        Column("created_at", "TIMESTAMP", "When the snapshot was taken"),
    ),
    TRAINING_RUNS: (
        Column("run_name", "STRING", "Pipeline run name"),
        Column("snapshot_id", "STRING", "The snapshot it trained on"),
        Column("deployed", "BOOL", "Whether the run deployed its model"),
        Column("gate_reason", "STRING", "Why the gate passed or failed it"),
        Column("metrics", "STRING", "Evaluation metrics, JSON"),
        Column("model_version", "STRING", "Registered version, if any", mode="NULLABLE"),
        Column("steps", "STRING", "Each step's final state, JSON"),
        Column("finished_at", "TIMESTAMP", "When the run was recorded"),
    ),
}


# Raw columns a warehouse fills in itself when it loads a file; the loader supplies the rest.
RAW_COMPUTED = frozenset({"ingest_id", "source_object", "event_time", "loaded_at"})
RAW_FRAME_COLUMNS: tuple[str, ...] = tuple(c.name for c in RAW_SCHEMA if c.name not in RAW_COMPUTED)


def require_raw_frame(frame: pd.DataFrame, source_object: str) -> None:
    """Refuse a frame a warehouse cannot load: raw columns missing, or no rows."""
    missing = [c for c in RAW_FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"frame lacks raw columns {missing}", location=source_object)
    if frame.empty:
        raise InvalidInputError("no rows to load", location=source_object)
