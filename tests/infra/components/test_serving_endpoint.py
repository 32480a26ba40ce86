from __future__ import annotations

import pytest

from components.serving_endpoint import ServingEndpoint, ServingEndpointArgs
from tests.infra.conftest import assert_component_shape, run_component

ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"


def _args(**overrides: object) -> ServingEndpointArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        endpoint_id="fraud-mlops-test-serving",
        request_log_dataset_uri="bq://fraud-mlops-test.fraud_mlops_test_predictions",
        request_log_sampling_rate=0.25,
        deletion_protection=False,
    )
    base.update(overrides)
    return ServingEndpointArgs(**base)  # type: ignore[arg-type]


def test_serving_endpoint_logs_requests_to_bigquery() -> None:
    run = run_component(lambda: ServingEndpoint("serving", _args()))

    assert_component_shape(run, "serving", "fraud-mlops:gcp:ServingEndpoint")
    (endpoint,) = run.of_type(ENDPOINT)
    assert endpoint.inputs["name"] == "fraud-mlops-test-serving"
    assert endpoint.inputs["predictRequestResponseLoggingConfig"] == {
        "enabled": True,
        "samplingRate": 0.25,
        "bigqueryDestination": {"outputUri": "bq://fraud-mlops-test.fraud_mlops_test_predictions"},
    }


def test_serving_endpoint_holds_only_the_endpoint() -> None:
    run = run_component(lambda: ServingEndpoint("serving", _args()))

    assert [r.type for r in run.registrations if r.custom] == [ENDPOINT]


def test_serving_endpoint_without_log_dataset_leaves_logging_off() -> None:
    run = run_component(lambda: ServingEndpoint("serving", _args(request_log_dataset_uri=None)))

    (endpoint,) = run.of_type(ENDPOINT)
    assert "predictRequestResponseLoggingConfig" not in endpoint.inputs


def test_serving_endpoint_kms_key_encrypts_endpoint() -> None:
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    run = run_component(lambda: ServingEndpoint("serving", _args(kms_key_name=key)))

    (endpoint,) = run.of_type(ENDPOINT)
    assert endpoint.inputs["encryptionSpec"] == {"kmsKeyName": key}


# CreateEndpointRequest.endpoint_id: up to 9 digits without a leading zero, or a
# lowercase letter then up to 62 of [a-z0-9-], the last one not "-".
VALID_IDS = ["1", "123456789", "a", "fraud-mlops-dev-serving", "e2", "a" + "b-1" * 20 + "cd"]
INVALID_IDS = [
    "1234567890",  # 10 digits: what the stack used to derive
    "0123",  # leading zero
    "12a",  # a number must be digits only
    "Fraud",  # upper case
    "fraud-",  # ends in a hyphen
    "-fraud",  # starts with a hyphen
    "fraud_mlops",  # underscore
    "a" * 64,  # longer than 63
    "",
]


@pytest.mark.parametrize("endpoint_id", VALID_IDS)
def test_serving_endpoint_args_id_vertex_accepts_validates(endpoint_id: str) -> None:
    assert len(endpoint_id) <= 63
    _args(endpoint_id=endpoint_id).validate()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        *(({"endpoint_id": bad}, "endpoint_id") for bad in INVALID_IDS),
        ({"request_log_sampling_rate": 0.0}, "request_log_sampling_rate"),
        ({"request_log_sampling_rate": 1.5}, "request_log_sampling_rate"),
    ],
)
def test_serving_endpoint_args_invalid_value_raises_naming_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"ServingEndpointArgs.{field}"):
        _args(**overrides).validate()


@pytest.mark.parametrize("protect", [True, False])
def test_serving_endpoint_protect_follows_deletion_protection(protect: bool) -> None:
    run = run_component(lambda: ServingEndpoint("serving", _args(deletion_protection=protect)))

    (endpoint,) = run.of_type(ENDPOINT)
    assert endpoint.protect is protect
