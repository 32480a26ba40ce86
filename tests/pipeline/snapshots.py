"""Training snapshots made through the real DuckDB warehouse."""

from __future__ import annotations

from app.core.config import RuntimeConfig
from app.core.ports import SnapshotInfo
from app.core.warehouse.duckdb import DuckDBWarehouse
from tests.support.synthetic import synthetic_raw_frame


def load_snapshot(cfg: RuntimeConfig, *, rows: int = 5000, seed: int = 3) -> SnapshotInfo:
    """Raw rows through the real warehouse: load, transform (card features), snapshot."""
    assert cfg.warehouse.kind == "duckdb"
    warehouse = DuckDBWarehouse(cfg.warehouse.path)
    ingest_id = f"synthetic-{seed}.csv@{rows}"
    warehouse.load_raw(
        synthetic_raw_frame(rows, seed=seed),
        ingest_id=ingest_id,
        source_object="synthetic.csv",
        content_hash=f"synthetic-{seed}-{rows}",
    )
    warehouse.build_training_table()
    return warehouse.snapshot_training(ingest_id=ingest_id, source_object="synthetic.csv")
