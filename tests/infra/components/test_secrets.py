from __future__ import annotations

import pytest

from components.secrets import CardKeySecret, CardKeySecretArgs
from tests.infra.conftest import assert_component_shape, run_component

SECRET = "gcp:secretmanager/secret:Secret"
KEY = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"


def _args(**overrides: object) -> CardKeySecretArgs:
    base: dict[str, object] = dict(
        project="p",
        region="us-central1",
        secret_id="fraud-mlops-test-card-hmac-key",
        deletion_protection=False,
    )
    base.update(overrides)
    return CardKeySecretArgs(**base)  # type: ignore[arg-type]


def test_card_key_secret_without_key_replicates_automatically() -> None:
    run = run_component(lambda: CardKeySecret("card-key", _args()))

    assert_component_shape(run, "card-key", "fraud-mlops:gcp:CardKeySecret")
    (secret,) = run.of_type(SECRET)
    assert secret.inputs["replication"] == {"auto": {}}
    assert secret.protect is False


def test_card_key_secret_with_key_uses_one_regional_cmek_replica() -> None:
    run = run_component(
        lambda: CardKeySecret("card-key", _args(kms_key_name=KEY, deletion_protection=True))
    )

    (secret,) = run.of_type(SECRET)
    assert secret.inputs["replication"] == {
        "userManaged": {
            "replicas": [
                {"location": "us-central1", "customerManagedEncryption": {"kmsKeyName": KEY}}
            ]
        }
    }
    assert secret.inputs["deletionProtection"] is True
    assert secret.protect is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret_id": "no spaces"}, "secret_id"),
        ({"kms_key_name": KEY.replace("us-central1", "europe-west1")}, "kms_key_name"),
    ],
)
def test_card_key_secret_args_invalid_value_raises_naming_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"CardKeySecretArgs.{field}"):
        _args(**overrides).validate()


def test_card_key_secret_version_is_pinned_never_latest() -> None:
    built: list[CardKeySecret] = []
    run_component(lambda: built.append(CardKeySecret("card-key", _args())))

    assert built[0].version == "projects/p/secrets/fraud-mlops-test-card-hmac-key/versions/1"


def test_card_key_secret_version_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="key_version: 'latest'"):
        _args(key_version="latest").validate()
