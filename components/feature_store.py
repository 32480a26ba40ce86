"""Vertex AI Feature Online Store on Bigtable, and the feature view over the
per-card feature table. (Optimized serving is deprecated; Bigtable autoscales.)"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.base import Component

_STORE_ID = re.compile(r"^[a-z_][a-z0-9_]{0,59}$")
# Bigtable autoscaling rejects a maximum above 10x the minimum.
MAX_NODES_FACTOR = 10


@dataclass(frozen=True)
class FeatureStoreArgs:
    project: str
    region: str
    store_id: str
    view_id: str
    # bq://project.dataset.table of the per-card feature table
    source_table_uri: pulumi.Input[str]
    entity_id_column: str
    min_nodes: int
    max_nodes: int
    cpu_target: int
    sync_cron: str
    deletion_protection: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        for label, value in (("store_id", self.store_id), ("view_id", self.view_id)):
            if not _STORE_ID.match(value):
                raise ValueError(f"FeatureStoreArgs.{label}: {value!r} is not [a-z0-9_]{{1,60}}")
        if self.min_nodes < 1:
            raise ValueError("FeatureStoreArgs.min_nodes: must be at least 1")
        if self.max_nodes < self.min_nodes:
            raise ValueError("FeatureStoreArgs.max_nodes: must be >= min_nodes")
        if self.max_nodes > MAX_NODES_FACTOR * self.min_nodes:
            raise ValueError(
                f"FeatureStoreArgs.max_nodes: {self.max_nodes} is more than "
                f"{MAX_NODES_FACTOR} x min_nodes ({self.min_nodes}); Bigtable rejects it"
            )
        if not 10 <= self.cpu_target <= 80:
            raise ValueError("FeatureStoreArgs.cpu_target: Bigtable accepts 10-80 (percent)")
        if not self.entity_id_column:
            raise ValueError("FeatureStoreArgs.entity_id_column: required")


class FeatureStore(Component):
    def __init__(
        self, name: str, args: FeatureStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("FeatureStore", name, opts)
        self.store = gcp.vertex.AiFeatureOnlineStore(
            self.n("store"),
            project=args.project,
            region=args.region,
            name=args.store_id,
            labels=dict(args.labels),
            bigtable=gcp.vertex.AiFeatureOnlineStoreBigtableArgs(
                auto_scaling=gcp.vertex.AiFeatureOnlineStoreBigtableAutoScalingArgs(
                    min_node_count=args.min_nodes,
                    max_node_count=args.max_nodes,
                    cpu_utilization_target=args.cpu_target,
                )
            ),
            encryption_spec=(
                gcp.vertex.AiFeatureOnlineStoreEncryptionSpecArgs(kms_key_name=args.kms_key_name)
                if args.kms_key_name
                else None
            ),
            force_destroy=not args.deletion_protection,
            opts=self.child(protect=args.deletion_protection, depends_on=args.kms_ready),
        )
        self.view = gcp.vertex.AiFeatureOnlineStoreFeatureview(
            self.n("view"),
            project=args.project,
            region=args.region,
            feature_online_store=self.store.name,
            name=args.view_id,
            labels=dict(args.labels),
            big_query_source=gcp.vertex.AiFeatureOnlineStoreFeatureviewBigQuerySourceArgs(
                uri=args.source_table_uri,
                entity_id_columns=[args.entity_id_column],
            ),
            sync_config=gcp.vertex.AiFeatureOnlineStoreFeatureviewSyncConfigArgs(
                cron=f"TZ=UTC {args.sync_cron}"
            ),
            # Deleting the view drops its synced online data until the next full sync.
            opts=self.child(protect=args.deletion_protection),
        )
        self.register_outputs(
            {"online_store_id": self.store.name, "feature_view_id": self.view.name}
        )
