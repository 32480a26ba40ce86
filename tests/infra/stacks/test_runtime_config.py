from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pydantic import ValidationError

from app.core.config import RuntimeConfig
from stacks.config import load
from stacks.mocks import FakeGcp
from stacks.runtime_config import ResolvedOutputs, build_runtime_config
from tests.infra.conftest import run_program

OUTPUTS = ResolvedOutputs(
    raw_dataset="fraud_mlops_dev_raw",
    training_dataset="fraud_mlops_dev_training",
    snapshot_dataset="fraud_mlops_dev_snapshot",
    lineage_dataset="fraud_mlops_dev_lineage",
    online_store_id="fraud_mlops_dev",
    feature_view_id="card_features",
    feature_source_table_uri="bq://p.fraud_mlops_dev_features.card_features",
    sync_account="fmo-dev-sync@p.iam.gserviceaccount.com",
    pipeline_root="gs://b/runs",
    template_uri="gs://b/templates/t.yaml",
    model_artifact_root="gs://fmo-pipeline/models",
    trainer_image=f"us-central1-docker.pkg.dev/p/fraud-mlops-dev-images/trainer@sha256:{'a' * 64}",
    serving_image=f"us-central1-docker.pkg.dev/p/fraud-mlops-dev-images/serving@sha256:{'b' * 64}",
    training_account="fmo-dev-train@p.iam.gserviceaccount.com",
    endpoint_id="fraud-mlops-dev-serving",
    landing_bucket="landing",
    landing_subscription="projects/p/subscriptions/s",
    landing_topic="projects/p/topics/t",
    landing_dead_letter_topic="projects/p/topics/t-dead-letters",
    landing_dead_letter_subscription="projects/p/subscriptions/s-dead-letters",
    composer_environment="fraud-mlops-dev",
    card_key_version="projects/p/secrets/k/versions/1",
)
CFG = load(
    {"project": "fraud-mlops-dev", "environment": "dev", "endpoint.canaryTrafficPercent": "5"}.get
)


def test_build_runtime_config_round_trips_through_app_json() -> None:
    cfg = build_runtime_config(CFG, OUTPUTS)

    assert RuntimeConfig.from_json(cfg.to_json()) == cfg
    assert cfg.endpoint.canary_traffic_percent == 5  # type: ignore[union-attr]
    assert cfg.warehouse.location == CFG.region  # type: ignore[union-attr]


def test_build_runtime_config_lineage_dataset_is_the_stacks_own() -> None:
    warehouse = build_runtime_config(CFG, OUTPUTS).warehouse

    assert warehouse.lineage_dataset == "fraud_mlops_dev_lineage"  # type: ignore[union-attr]
    assert warehouse.api_endpoint is None  # type: ignore[union-attr]


def test_build_runtime_config_images_and_model_flow_from_the_outputs() -> None:
    cfg = build_runtime_config(CFG, OUTPUTS)

    assert cfg.pipeline.trainer_image == OUTPUTS.trainer_image  # type: ignore[union-attr]
    assert cfg.registry.serving_image == OUTPUTS.serving_image  # type: ignore[union-attr]
    assert cfg.registry.artifact_root == "gs://fmo-pipeline/models"  # type: ignore[union-attr]
    assert cfg.registry.model_id == "fraud-mlops-dev"  # type: ignore[union-attr]


def test_build_runtime_config_image_by_tag_raises() -> None:
    with pytest.raises(ValidationError, match="trainer_image"):
        build_runtime_config(
            CFG, dataclasses.replace(OUTPUTS, trainer_image="fraud-mlops-trainer:latest")
        )


def test_build_runtime_config_bad_output_raises() -> None:
    with pytest.raises(ValidationError, match="pipeline_root"):
        build_runtime_config(CFG, dataclasses.replace(OUTPUTS, pipeline_root="/not/gcs"))


def test_build_runtime_config_landing_carries_the_dead_letter_path() -> None:
    landing = build_runtime_config(CFG, OUTPUTS).landing

    assert landing.subscription == "projects/p/subscriptions/s"  # type: ignore[union-attr]
    assert landing.topic == "projects/p/topics/t"  # type: ignore[union-attr]
    assert landing.dead_letter_topic == "projects/p/topics/t-dead-letters"  # type: ignore[union-attr]
    assert (
        landing.dead_letter_subscription  # type: ignore[union-attr]
        == "projects/p/subscriptions/s-dead-letters"
    )


def test_build_runtime_config_dead_letter_topic_not_a_topic_path_raises() -> None:
    with pytest.raises(ValidationError, match="dead_letter_topic"):
        build_runtime_config(
            CFG, dataclasses.replace(OUTPUTS, landing_dead_letter_topic="t-dead-letters")
        )


def test_build_runtime_config_endpoint_id_vertex_rejects_raises() -> None:
    # The app's VertexEndpointConfig takes any string: the stack holds the API's rule.
    with pytest.raises(ValueError, match="endpoint_id: '1234567890'"):
        build_runtime_config(CFG, dataclasses.replace(OUTPUTS, endpoint_id="1234567890"))


class _BadDatasetIds(FakeGcp):
    """GCP answering with a dataset id the app's config cannot accept."""

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "gcp:bigquery/dataset:Dataset":
            state = {**state, "datasetId": "Not A Dataset"}
        return rid, state


def test_program_invalid_runtime_config_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="raw_dataset"):
        run_program("dev", tmp_path, mocks=_BadDatasetIds())
