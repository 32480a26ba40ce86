from __future__ import annotations

from pathlib import Path

import pytest

from components.training_pipeline import (
    TrainingPipeline,
    TrainingPipelineArgs,
    template_object_name,
)
from tests.infra.conftest import assert_component_shape, run_component


def _args(template: Path, **overrides: object) -> TrainingPipelineArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        bucket_name="fraud-mlops-test-pipeline",
        template_path=template,
        deletion_protection=False,
    )
    base.update(overrides)
    return TrainingPipelineArgs(**base)  # type: ignore[arg-type]


def test_training_pipeline_uploads_template_under_content_hash(template: Path) -> None:
    run = run_component(lambda: TrainingPipeline("training-pipeline", _args(template)))

    assert_component_shape(run, "training-pipeline", "fraud-mlops:gcp:TrainingPipeline")
    (obj,) = run.of_type("gcp:storage/bucketObject:BucketObject")
    assert obj.inputs["bucket"] == "fraud-mlops-test-pipeline"
    assert obj.inputs["name"] == template_object_name(template)
    assert obj.inputs["source"].path == str(template)


def test_training_pipeline_holds_only_root_bucket_and_template(template: Path) -> None:
    run = run_component(lambda: TrainingPipeline("training-pipeline", _args(template)))

    assert sorted(r.type for r in run.registrations if r.custom) == [
        "gcp:storage/bucket:Bucket",
        "gcp:storage/bucketObject:BucketObject",
    ]


def test_training_pipeline_template_name_changes_only_with_content(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.yaml", "b.yaml", "c.yaml"))
    a.write_text("x: 1\n")
    b.write_text("x: 1\n")
    c.write_text("x: 2\n")

    assert template_object_name(a) == template_object_name(b)
    assert template_object_name(a) != template_object_name(c)


def test_training_pipeline_kms_key_encrypts_bucket(template: Path) -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(
        lambda: TrainingPipeline("training-pipeline", _args(template, kms_key_name=key))
    )

    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    assert bucket.inputs["encryption"] == {"defaultKmsKeyName": key}


@pytest.mark.parametrize("protect", [True, False])
def test_training_pipeline_bucket_protect_follows_deletion_protection(
    template: Path, protect: bool
) -> None:
    run = run_component(
        lambda: TrainingPipeline("training-pipeline", _args(template, deletion_protection=protect))
    )

    (bucket,) = run.of_type("gcp:storage/bucket:Bucket")
    assert bucket.protect is protect
    assert bucket.inputs["forceDestroy"] is not protect


def test_training_pipeline_args_missing_template_raises_naming_field(template: Path) -> None:
    args = _args(template, template_path=Path("/nonexistent/pipeline.yaml"))

    with pytest.raises(ValueError, match="TrainingPipelineArgs.template_path"):
        args.validate()
