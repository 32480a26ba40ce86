from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from components.access import AccessArgs


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
        training_pipeline=None,
        endpoint=None,
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
