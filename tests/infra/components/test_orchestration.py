from __future__ import annotations

from pathlib import Path

import pytest

from components.orchestration import (
    CONFIG_OBJECT,
    GCS_MOUNT,
    Orchestration,
    OrchestrationArgs,
)
from tests.infra.conftest import assert_component_shape, run_component

ENV = "gcp:composer/environment:Environment"
OBJECT = "gcp:storage/bucketObject:BucketObject"
CONFIG_JSON = '{"environment": "dev"}'


def _args(source_root: Path, **overrides: object) -> OrchestrationArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        environment_name="fraud-mlops-test",
        image_version="composer-3-airflow-3.1.0",
        environment_size="ENVIRONMENT_SIZE_SMALL",
        service_account_email="fmo-test-orch@p.iam.gserviceaccount.com",
        runtime_config_json=CONFIG_JSON,
        source_root=source_root,
        worker_min_count=1,
        worker_max_count=3,
        private_ip=False,
        deletion_protection=False,
    )
    base.update(overrides)
    return OrchestrationArgs(**base)  # type: ignore[arg-type]


def test_orchestration_composer3_runs_as_orchestration_account(source_root: Path) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    assert_component_shape(run, "orchestration", "fraud-mlops:gcp:Orchestration")
    (env,) = run.of_type(ENV)
    config = env.inputs["config"]
    assert config["softwareConfig"]["imageVersion"] == "composer-3-airflow-3.1.0"
    assert config["nodeConfig"]["serviceAccount"] == "fmo-test-orch@p.iam.gserviceaccount.com"
    assert config["workloadsConfig"]["worker"] == {"minCount": 1, "maxCount": 3}
    assert config["enablePrivateEnvironment"] is False


def test_orchestration_runtime_config_lands_in_bucket_and_env_points_at_it(
    source_root: Path,
) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    (env,) = run.of_type(ENV)
    (config_obj,) = [r for r in run.of_type(OBJECT) if r.inputs["name"] == CONFIG_OBJECT]
    assert config_obj.inputs["content"] == CONFIG_JSON
    assert config_obj.inputs["bucket"].endswith("-bucket")  # the environment's own bucket
    env_vars = env.inputs["config"]["softwareConfig"]["envVariables"]
    assert env_vars == {"FRAUD_MLOPS_CONFIG": f"@{GCS_MOUNT}/{CONFIG_OBJECT}"}


def test_orchestration_uploads_dags_and_app_package_without_bytecode(source_root: Path) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(source_root)))

    names = {r.inputs["name"] for r in run.of_type(OBJECT)}
    assert {
        "dags/app/__init__.py",
        "dags/app/core/config.py",
        "dags/app/core/sql/training.sql",
        "dags/app/dags/fraud_training.py",
        "dags/.airflowignore",
    } <= names
    assert not [n for n in names if n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("dags/app/function/")]


def test_orchestration_private_ip_and_cmek_from_args(source_root: Path) -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(
        lambda: Orchestration(
            "orchestration",
            _args(source_root, private_ip=True, kms_key_name=key, deletion_protection=True),
        )
    )

    (env,) = run.of_type(ENV)
    assert env.inputs["config"]["enablePrivateEnvironment"] is True
    assert env.inputs["config"]["encryptionConfig"] == {"kmsKeyName": key}
    assert env.protect


def test_orchestration_missing_app_tree_uploads_only_config(tmp_path: Path) -> None:
    run = run_component(lambda: Orchestration("orchestration", _args(tmp_path)))

    assert {r.inputs["name"] for r in run.of_type(OBJECT)} == {
        CONFIG_OBJECT,
        "dags/.airflowignore",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_version": "composer-2.9.0-airflow-2.9.3"}, "image_version"),
        ({"environment_size": "HUGE"}, "environment_size"),
        ({"worker_min_count": 4, "worker_max_count": 2}, "worker_max_count"),
        ({"environment_name": "Fraud_Env"}, "environment_name"),
    ],
)
def test_orchestration_args_invalid_value_raises_naming_field(
    source_root: Path, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"OrchestrationArgs.{field}"):
        _args(source_root, **overrides).validate()
