from __future__ import annotations

import pytest

from components.identity import PURPOSES, Identity, IdentityArgs
from tests.infra.conftest import assert_component_shape, run_component

ACCOUNTS = {role: f"fmo-test-{role[:5]}" for role in PURPOSES}


def test_identity_one_account_per_role_with_purpose() -> None:
    run = run_component(
        lambda: Identity("identity", IdentityArgs(project="fraud-mlops-test", account_ids=ACCOUNTS))
    )

    assert_component_shape(run, "identity", "fraud-mlops:gcp:Identity")
    accounts = run.of_type("gcp:serviceaccount/account:Account")
    assert {r.inputs["accountId"] for r in accounts} == set(ACCOUNTS.values())
    for r in accounts:
        role = r.name.removeprefix("identity-")
        assert r.inputs["description"] == PURPOSES[role]


def test_identity_creates_no_keys_and_no_bindings() -> None:
    run = run_component(
        lambda: Identity("identity", IdentityArgs(project="fraud-mlops-test", account_ids=ACCOUNTS))
    )

    assert {r.type for r in run.registrations if r.custom} == {"gcp:serviceaccount/account:Account"}


@pytest.mark.parametrize(
    "account_ids",
    [{"inference": "x"}, {"inference": "Upper-Case-Id"}, {"admin": "fmo-test-admin"}],
)
def test_identity_args_bad_account_raises_naming_field(account_ids: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"IdentityArgs\.account_ids"):
        IdentityArgs(project="p", account_ids=account_ids).validate()
