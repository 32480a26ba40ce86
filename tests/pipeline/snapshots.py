"""Training snapshots made through the real DuckDB warehouse."""

from __future__ import annotations

from app.backends import Backends
from app.core.config import RuntimeConfig
from app.core.records import SnapshotInfo
from tests.support.synthetic import synthetic_raw_frame


def load_snapshot(cfg: RuntimeConfig, *, rows: int = 5000, seed: int = 3) -> SnapshotInfo:
    """Raw rows through the real warehouse: load, transform (card features), snapshot."""
    warehouse = Backends(cfg).warehouse
    ingest_id = f"synthetic-{seed}.csv@{rows}"
    warehouse.load_raw(
        synthetic_raw_frame(rows, seed=seed),
        ingest_id=ingest_id,
        source_object="synthetic.csv",
        content_hash=f"synthetic-{seed}-{rows}",
    )
    warehouse.build_training_table()
    return warehouse.snapshot_training(ingest_id=ingest_id, source_object="synthetic.csv")
