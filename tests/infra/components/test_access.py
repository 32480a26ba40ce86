from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from components.access import (
    DEPLOYER_PERMISSIONS,
    LAUNCHER_PERMISSIONS,
    PREDICTOR_PERMISSIONS,
    SYNCER_PERMISSIONS,
    TRAINING_PERMISSIONS,
    AccessArgs,
)
from tests.infra.expected_permissions import EXPECTED_PERMISSIONS


def _args(**overrides: Any) -> AccessArgs:
    identity = SimpleNamespace(
        accounts=dict.fromkeys(("orchestration", "training", "sync", "inference"))
    )
    base: dict[str, Any] = dict(
        project="p",
        region="us-central1",
        identity=identity,
        warehouse=None,
        landing=None,
        feature_store=None,
        pipeline=None,
        card_key=None,
        agents=None,
        predictor_role_id="fraud_mlops_test_endpoint_predictor",
        deployer_role_id="fraud_mlops_test_endpoint_deployer",
        training_role_id="fraud_mlops_test_training_pipeline",
        launcher_role_id="fraud_mlops_test_pipeline_launcher",
        syncer_role_id="fraud_mlops_test_feature_view_syncer",
    )
    base.update(overrides)
    return AccessArgs(**base)


def test_access_predictor_permissions_are_predict_and_get_only() -> None:
    assert sorted(PREDICTOR_PERMISSIONS) == EXPECTED_PERMISSIONS["endpoint_predictor"]


def test_access_deployer_permissions_are_deploy_undeploy_update_and_get_only() -> None:
    assert sorted(DEPLOYER_PERMISSIONS) == EXPECTED_PERMISSIONS["endpoint_deployer"]


def test_access_training_permissions_are_models_and_ml_metadata_only() -> None:
    assert sorted(TRAINING_PERMISSIONS) == EXPECTED_PERMISSIONS["training_pipeline"]


def test_access_launcher_permissions_are_pipeline_jobs_only() -> None:
    assert sorted(LAUNCHER_PERMISSIONS) == EXPECTED_PERMISSIONS["pipeline_launcher"]


def test_access_syncer_permissions_are_feature_view_sync_only() -> None:
    assert sorted(SYNCER_PERMISSIONS) == EXPECTED_PERMISSIONS["feature_view_syncer"]


@pytest.mark.parametrize(
    "permissions",
    [
        PREDICTOR_PERMISSIONS,
        DEPLOYER_PERMISSIONS,
        TRAINING_PERMISSIONS,
        LAUNCHER_PERMISSIONS,
        SYNCER_PERMISSIONS,
    ],
)
def test_access_custom_roles_never_delete_export_or_change_iam(
    permissions: tuple[str, ...],
) -> None:
    assert len(set(permissions)) == len(permissions)
    assert all(p.startswith("aiplatform.") for p in permissions)
    verbs = {p.rsplit(".", 1)[1] for p in permissions}
    assert not verbs & {"delete", "export", "setIamPolicy", "getIamPolicy"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"predictor_role_id": "fraud-mlops-test-predictor"}, "predictor_role_id"),
        ({"predictor_role_id": "ab"}, "predictor_role_id"),
        ({"deployer_role_id": "fraud-mlops-test-deployer"}, "deployer_role_id"),
        ({"training_role_id": "x" * 65}, "training_role_id"),
        ({"launcher_role_id": "a b c"}, "launcher_role_id"),
        ({"syncer_role_id": ""}, "syncer_role_id"),
        ({"landing_writers": ("allUsers",)}, "landing_writers"),
    ],
)
def test_access_args_invalid_value_raises_naming_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"AccessArgs.{field}"):
        _args(**overrides).validate()


def test_access_args_duplicate_role_ids_raise() -> None:
    with pytest.raises(ValueError, match="distinct"):
        _args(deployer_role_id="fraud_mlops_test_endpoint_predictor").validate()
