"""The seams: one small Protocol per role, and the records that cross them.

Local implementations are named ``<Tech><Role>`` (``DuckDBWarehouse``); the GCP
ones plug in behind the same Protocols. Only :mod:`app.core.backends` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

# --- records -----------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    ingest_id: str
    source_object: str
    rows_loaded: int
    already_loaded: bool


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    table: str
    source_ingest_id: str
    source_object: str
    row_count: int
    fraud_count: int
    content_hash: str
    created_at: str  # ISO-8601 UTC


@dataclass(frozen=True)
class SyncInfo:
    snapshot_id: str
    cards: int
    synced_at: str


@dataclass(frozen=True)
class FeatureRecord:
    card_id: str
    card_masked: str
    event_time: float
    features: Mapping[str, float | None]
    feature_timestamp: str
    snapshot_id: str


@dataclass(frozen=True)
class ModelVersion:
    version: str
    snapshot_id: str
    artifact_uri: str
    threshold: float
    metrics: Mapping[str, float]
    params: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""


@dataclass(frozen=True)
class Prediction:
    probability: float
    threshold: float
    model_version: str

    @property
    def is_fraud(self) -> bool:
        return self.probability >= self.threshold


@dataclass(frozen=True)
class PipelineResult:
    run_name: str
    snapshot_id: str
    deployed: bool
    gate_reason: str
    metrics: Mapping[str, float]
    model_version: str | None


@dataclass(frozen=True)
class LandedObject:
    name: str
    uri: str
    content_hash: str

    @property
    def ingest_id(self) -> str:
        return f"{self.name}@{self.content_hash[:16]}"


# --- roles -------------------------------------------------------------------


class Warehouse(Protocol):
    def find_ingest(self, content_hash: str) -> str | None:
        """The ingest id under which this content was loaded, if it was."""
        ...

    def load_raw(
        self, frame: pd.DataFrame, *, ingest_id: str, source_object: str, content_hash: str
    ) -> IngestResult:
        """Append ``frame`` to raw, all rows or none; known content adds nothing.

        ``source_time`` is the file's own clock; the warehouse places the file after the
        latest loaded transaction to give ``event_time``.
        """
        ...

    def build_training_table(self) -> int:
        """Rebuild the training table (point-in-time card features) from raw; return its rows."""
        ...

    def snapshot_training(self, *, ingest_id: str, source_object: str) -> SnapshotInfo:
        """Freeze the training table; the same ``ingest_id`` returns its existing snapshot."""
        ...

    def get_snapshot(self, snapshot_id: str) -> SnapshotInfo: ...

    def list_snapshots(self) -> list[SnapshotInfo]: ...

    def read_snapshot(self, snapshot_id: str) -> pd.DataFrame: ...

    def snapshot_content_hash(self, snapshot_id: str) -> str:
        """Hash recomputed from the stored rows, to prove a snapshot never changed."""
        ...

    def latest_card_features(self, snapshot_id: str) -> pd.DataFrame:
        """One row per card: the features of its latest transaction in the snapshot."""
        ...

    def table_counts(self) -> dict[str, int]: ...

    def record_training_run(self, result: PipelineResult) -> None:
        """Lineage: which pipeline run trained on which snapshot, and what it decided."""
        ...

    def training_runs(self, snapshot_id: str | None = None) -> list[PipelineResult]: ...


class OnlineStore(Protocol):
    def sync(self, features: pd.DataFrame, *, snapshot_id: str) -> SyncInfo:
        """Replace the whole feature view at once; readers see the old or the new, never half."""
        ...

    def fetch(self, card_id: str) -> FeatureRecord:
        """Raise NotFoundError for an unknown card, BackendUnavailableError if the store is down."""
        ...

    def last_sync(self) -> SyncInfo | None: ...


class ModelRegistry(Protocol):
    def register(
        self,
        *,
        artifact_path: Path,
        snapshot_id: str,
        threshold: float,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
    ) -> ModelVersion: ...

    def get(self, version: str) -> ModelVersion: ...

    def list_versions(self) -> list[ModelVersion]: ...


class ModelEndpoint(Protocol):
    def deploy(self, version: ModelVersion) -> None: ...

    def deployed(self) -> ModelVersion | None: ...

    def predict(self, features: Mapping[str, float | None]) -> Prediction:
        """Raise BackendUnavailableError when no model is deployed or it cannot be loaded."""
        ...


class PipelineRunner(Protocol):
    def run(self, *, snapshot_id: str, run_name: str) -> PipelineResult: ...


class LandingZone(Protocol):
    def land(self, source: Path, *, name: str | None = None) -> LandedObject:
        """Put a file in the landing area atomically and announce it (object-finalize)."""
        ...

    def local_path(self, name: str) -> Path:
        """A local readable copy of a landed object."""
        ...
