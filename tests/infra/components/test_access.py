from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from components.access import PREDICTOR_PERMISSIONS, AccessArgs


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
    )
    base.update(overrides)
    return AccessArgs(**base)


def test_access_predictor_permissions_are_predict_and_get_only() -> None:
    assert sorted(PREDICTOR_PERMISSIONS) == [
        "aiplatform.endpoints.get",
        "aiplatform.endpoints.predict",
    ]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"predictor_role_id": "fraud-mlops-test-predictor"}, "predictor_role_id"),
        ({"predictor_role_id": "ab"}, "predictor_role_id"),
        ({"landing_writers": ("allUsers",)}, "landing_writers"),
    ],
)
def test_access_args_invalid_value_raises_naming_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"AccessArgs.{field}"):
        _args(**overrides).validate()
