"""BigQuery: raw, training, snapshot, lineage, feature and prediction-log datasets, and
the tables whose schemas come from :mod:`app.core.schema` (the definition the app uses).

Named ``WarehouseDatasets``, not ``Warehouse``: the app's ``Warehouse`` is the port
its code queries through; this is only the BigQuery storage behind it.

The feature view's source table has a dataset of its own so that only the sync
account can write it (the orchestration account edits the training dataset).

Lineage (what was loaded, snapshotted and trained) has a dataset of its own too, one
that never expires: the snapshots it describes do. Its tables are the warehouse
backend's (``app/backends/gcp/bigquery_warehouse.py`` defines them and creates any that
is missing on first use), as the DuckDB home creates its own."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from app.core.schema import FEATURE_VIEW_SCHEMA, RAW_SCHEMA, TRAINING_SCHEMA, Column
from components.base import Component

_DATASET_ID = re.compile(r"^[a-z][a-z0-9_]{0,1000}$")
_DAY_MS = 24 * 60 * 60 * 1000

RAW_TABLE = "transactions"
TRAINING_TABLE = "transactions"
FEATURE_TABLE = "card_features"


def bigquery_schema(columns: Sequence[Column]) -> str:
    return json.dumps([c.bigquery_field() for c in columns])


@dataclass(frozen=True)
class WarehouseDatasetsArgs:
    project: str
    location: str
    dataset_prefix: str
    snapshot_expiration_days: int
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None

    def validate(self) -> None:
        if not _DATASET_ID.match(self.dataset_prefix):
            raise ValueError(
                f"WarehouseDatasetsArgs.dataset_prefix: {self.dataset_prefix!r} is not a dataset id"
            )
        if self.snapshot_expiration_days < 1:
            raise ValueError("WarehouseDatasetsArgs.snapshot_expiration_days: must be at least 1")


class WarehouseDatasets(Component):
    raw: gcp.bigquery.Dataset
    training: gcp.bigquery.Dataset
    snapshots: gcp.bigquery.Dataset
    lineage: gcp.bigquery.Dataset
    features: gcp.bigquery.Dataset
    predictions: gcp.bigquery.Dataset
    raw_table: gcp.bigquery.Table
    training_table: gcp.bigquery.Table
    feature_table: gcp.bigquery.Table

    def __init__(
        self, name: str, args: WarehouseDatasetsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("WarehouseDatasets", name, opts)
        self._args = args

        self.raw = self._dataset("raw", "Transactions as landed, card numbers replaced by HMACs")
        self.training = self._dataset("training", "Point-in-time training rows with card features")
        self.snapshots = self._dataset(
            "snapshot",
            "Table snapshots that pin each training run's data",
            # Snapshots are for lineage and rollback; they expire on their own.
            expiration_ms=args.snapshot_expiration_days * _DAY_MS,
        )
        self.lineage = self._dataset(
            "lineage",
            "Ingests, snapshots and training runs: outlives the snapshots it describes",
        )
        self.features = self._dataset(
            "features", "Latest features per card: the online feature view's source"
        )
        self.predictions = self._dataset(
            "predictions", "Endpoint request/response log written by Vertex AI"
        )

        self.raw_table = self._table(
            "raw-transactions",
            self.raw,
            RAW_TABLE,
            RAW_SCHEMA,
            "Landed transactions",
            partition_field="loaded_at",
        )
        self.training_table = self._table(
            "training-transactions",
            self.training,
            TRAINING_TABLE,
            TRAINING_SCHEMA,
            "Training rows with point-in-time card features",
            clustering=["card_id"],
        )
        self.feature_table = self._table(
            "feature-source",
            self.features,
            FEATURE_TABLE,
            FEATURE_VIEW_SCHEMA,
            "Latest features per card: the online feature view's source",
            clustering=["card_id"],
        )

        self.register_outputs(
            {
                "raw_dataset": self.raw.dataset_id,
                "training_dataset": self.training.dataset_id,
                "snapshot_dataset": self.snapshots.dataset_id,
                "lineage_dataset": self.lineage.dataset_id,
                "features_dataset": self.features.dataset_id,
                "predictions_dataset": self.predictions.dataset_id,
                "feature_table": self.feature_table.table_id,
            }
        )

    def _dataset(
        self, kind: str, description: str, *, expiration_ms: int | None = None
    ) -> gcp.bigquery.Dataset:
        a = self._args
        encryption = (
            gcp.bigquery.DatasetDefaultEncryptionConfigurationArgs(kms_key_name=a.kms_key_name)
            if a.kms_key_name
            else None
        )
        return gcp.bigquery.Dataset(
            self.n(kind),
            project=a.project,
            dataset_id=f"{a.dataset_prefix}_{kind}",
            location=a.location,
            description=description,
            labels=dict(a.labels),
            default_table_expiration_ms=expiration_ms,
            default_encryption_configuration=encryption,
            # Tables the app creates (snapshots, the prediction log) go with the
            # dataset only where the stack is deletable at all.
            delete_contents_on_destroy=not a.deletion_protection,
            opts=self.child(protect=a.deletion_protection),
        )

    def _table(
        self,
        suffix: str,
        dataset: gcp.bigquery.Dataset,
        table_id: str,
        columns: Sequence[Column],
        description: str,
        *,
        partition_field: str | None = None,
        clustering: list[str] | None = None,
    ) -> gcp.bigquery.Table:
        a = self._args
        return gcp.bigquery.Table(
            self.n(suffix),
            project=a.project,
            dataset_id=dataset.dataset_id,
            table_id=table_id,
            description=description,
            schema=bigquery_schema(columns),
            labels=dict(a.labels),
            time_partitioning=(
                gcp.bigquery.TableTimePartitioningArgs(type="DAY", field=partition_field)
                if partition_field
                else None
            ),
            clusterings=clustering,
            encryption_configuration=(
                gcp.bigquery.TableEncryptionConfigurationArgs(kms_key_name=a.kms_key_name)
                if a.kms_key_name
                else None
            ),
            deletion_protection=a.deletion_protection,
            opts=self.child(protect=a.deletion_protection),
        )
