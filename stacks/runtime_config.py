"""The app's :class:`~app.core.config.RuntimeConfig`, built from the stack's
resource outputs and validated while the program runs."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import (
    BigQueryWarehouseConfig,
    ComposerConfig,
    GcsLandingConfig,
    RuntimeConfig,
    SecretManagerConfig,
    VertexEndpointConfig,
    VertexModelRegistryConfig,
    VertexOnlineStoreConfig,
    VertexPipelineConfig,
)
from components.serving_endpoint import is_endpoint_id
from stacks.config import StackConfig


@dataclass(frozen=True)
class ResolvedOutputs:
    """Plain values of the outputs the runtime config names (after apply)."""

    raw_dataset: str
    training_dataset: str
    snapshot_dataset: str
    lineage_dataset: str
    online_store_id: str
    feature_view_id: str
    feature_source_table_uri: str
    sync_account: str
    pipeline_root: str
    template_uri: str
    model_artifact_root: str
    trainer_image: str
    serving_image: str
    training_account: str
    endpoint_id: str
    landing_bucket: str
    landing_subscription: str
    landing_topic: str
    landing_dead_letter_topic: str
    landing_dead_letter_subscription: str
    composer_environment: str
    card_key_version: str


def build_runtime_config(cfg: StackConfig, out: ResolvedOutputs) -> RuntimeConfig:
    """Raises pydantic's ValidationError if the outputs do not make a valid config,
    which fails the deployment before anything is handed a broken config."""
    if not is_endpoint_id(out.endpoint_id):
        # VertexEndpointConfig takes any string; an id Vertex would reject must not
        # reach the DAG and the function as if it named a live endpoint.
        raise ValueError(f"endpoint_id: {out.endpoint_id!r} is not a Vertex AI endpoint id")
    p, r = cfg.project, cfg.region
    return RuntimeConfig(
        environment=cfg.environment,
        warehouse=BigQueryWarehouseConfig(
            project=p,
            location=r,
            raw_dataset=out.raw_dataset,
            training_dataset=out.training_dataset,
            snapshot_dataset=out.snapshot_dataset,
            lineage_dataset=out.lineage_dataset,
            snapshot_expiration_days=cfg.warehouse.snapshot_expiration_days,
        ),
        online_store=VertexOnlineStoreConfig(
            project=p,
            location=r,
            online_store_id=out.online_store_id,
            feature_view_id=out.feature_view_id,
            source_table_uri=out.feature_source_table_uri,
            sync_service_account=out.sync_account,
        ),
        pipeline=VertexPipelineConfig(
            project=p,
            location=r,
            pipeline_root=out.pipeline_root,
            template_uri=out.template_uri,
            service_account=out.training_account,
            trainer=cfg.pipeline.trainer,
            trainer_image=out.trainer_image,
            automl_budget_milli_node_hours=cfg.pipeline.automl_budget_milli_node_hours,
        ),
        registry=VertexModelRegistryConfig(
            project=p,
            location=r,
            model_id=f"fraud-mlops-{cfg.environment}",
            model_display_name=f"fraud-mlops-{cfg.environment}",
            artifact_root=out.model_artifact_root,
            serving_image=out.serving_image,
        ),
        endpoint=VertexEndpointConfig(
            project=p,
            location=r,
            endpoint_id=out.endpoint_id,
            canary_traffic_percent=cfg.endpoint.canary_traffic_percent,
            machine_type=cfg.endpoint.machine_type,
            min_replicas=cfg.endpoint.min_replicas,
            max_replicas=cfg.endpoint.max_replicas,
        ),
        landing=GcsLandingConfig(
            bucket=out.landing_bucket,
            subscription=out.landing_subscription,
            topic=out.landing_topic,
            dead_letter_topic=out.landing_dead_letter_topic,
            dead_letter_subscription=out.landing_dead_letter_subscription,
        ),
        orchestrator=ComposerConfig(project=p, location=r, environment=out.composer_environment),
        card_key=SecretManagerConfig(secret_version=out.card_key_version),
    )
