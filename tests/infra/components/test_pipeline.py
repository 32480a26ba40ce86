from __future__ import annotations

from pathlib import Path

import pytest

from components.pipeline import Pipeline, PipelineArgs, template_object_name
from tests.infra.conftest import assert_component_shape, run_component

ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"


def _args(template: Path, **overrides: object) -> PipelineArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        bucket_name="fraud-mlops-test-pipeline",
        template_path=template,
        endpoint_id="1234567890",
        request_log_dataset_uri="bq://fraud-mlops-test.fraud_mlops_test_predictions",
        request_log_sampling_rate=0.25,
        deletion_protection=False,
    )
    base.update(overrides)
    return PipelineArgs(**base)  # type: ignore[arg-type]


def test_pipeline_uploads_template_under_content_hash(template: Path) -> None:
    run = run_component(lambda: Pipeline("pipeline", _args(template)))

    assert_component_shape(run, "pipeline", "fraud-mlops:gcp:Pipeline")
    (obj,) = run.of_type("gcp:storage/bucketObject:BucketObject")
    assert obj.inputs["bucket"] == "fraud-mlops-test-pipeline"
    assert obj.inputs["name"] == template_object_name(template)
    assert obj.inputs["source"].path == str(template)


def test_pipeline_template_name_changes_only_with_content(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.yaml", "b.yaml", "c.yaml"))
    a.write_text("x: 1\n")
    b.write_text("x: 1\n")
    c.write_text("x: 2\n")

    assert template_object_name(a) == template_object_name(b)
    assert template_object_name(a) != template_object_name(c)


def test_pipeline_endpoint_logs_requests_to_bigquery(template: Path) -> None:
    run = run_component(lambda: Pipeline("pipeline", _args(template)))

    (endpoint,) = run.of_type(ENDPOINT)
    assert endpoint.inputs["name"] == "1234567890"
    assert endpoint.inputs["predictRequestResponseLoggingConfig"] == {
        "enabled": True,
        "samplingRate": 0.25,
        "bigqueryDestination": {"outputUri": "bq://fraud-mlops-test.fraud_mlops_test_predictions"},
    }


def test_pipeline_without_log_dataset_leaves_logging_off(template: Path) -> None:
    run = run_component(lambda: Pipeline("pipeline", _args(template, request_log_dataset_uri=None)))

    (endpoint,) = run.of_type(ENDPOINT)
    assert "predictRequestResponseLoggingConfig" not in endpoint.inputs


def test_pipeline_kms_key_encrypts_bucket_and_endpoint(template: Path) -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(lambda: Pipeline("pipeline", _args(template, kms_key_name=key)))

    (endpoint,) = run.of_type(ENDPOINT)
    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    assert endpoint.inputs["encryptionSpec"] == {"kmsKeyName": key}
    assert bucket.inputs["encryption"] == {"defaultKmsKeyName": key}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"template_path": Path("/nonexistent/pipeline.yaml")}, "template_path"),
        ({"endpoint_id": "0123"}, "endpoint_id"),
        ({"endpoint_id": "fraud"}, "endpoint_id"),
        ({"request_log_sampling_rate": 0.0}, "request_log_sampling_rate"),
    ],
)
def test_pipeline_args_invalid_value_raises_naming_field(
    template: Path, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"PipelineArgs.{field}"):
        _args(template, **overrides).validate()


@pytest.mark.parametrize("protect", [True, False])
def test_pipeline_endpoint_protect_follows_deletion_protection(
    template: Path, protect: bool
) -> None:
    run = run_component(lambda: Pipeline("pipeline", _args(template, deletion_protection=protect)))

    (endpoint,) = run.of_type(ENDPOINT)
    assert endpoint.protect is protect
