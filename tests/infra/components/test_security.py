from __future__ import annotations

import pytest

from components.security import (
    CMEK_CREATED_AGENTS,
    PERIMETER_SERVICES,
    AuditLogs,
    AuditLogsArgs,
    KeyAccess,
    KeyAccessArgs,
    Perimeter,
    PerimeterArgs,
)
from stacks.mocks import PROJECT_NUMBER, MockRun
from tests.infra.conftest import assert_component_shape, run_component

KEY = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"


def test_audit_logs_default_covers_bigquery_and_vertex_data_access() -> None:
    run = run_component(lambda: AuditLogs("audit-logs", AuditLogsArgs(project="p")))

    assert_component_shape(run, "audit-logs", "fraud-mlops:gcp:AuditLogs")
    configs = {
        r.inputs["service"]: {c["logType"] for c in r.inputs["auditLogConfigs"]}
        for r in run.of_type("gcp:projects/iAMAuditConfig:IAMAuditConfig")
    }
    assert set(configs) == {"bigquery.googleapis.com", "aiplatform.googleapis.com"}
    assert all({"DATA_READ", "DATA_WRITE"} <= kinds for kinds in configs.values())


def _agent_members() -> dict[str, str]:
    return {a: f"serviceAccount:service-{PROJECT_NUMBER}@{a}.example" for a in CMEK_CREATED_AGENTS}


def test_key_access_grants_key_to_each_service_agent_only() -> None:
    run = run_component(
        lambda: KeyAccess(
            "key-access",
            KeyAccessArgs(project="p", kms_key_name=KEY, agent_members=_agent_members()),
        )
    )

    assert_component_shape(run, "key-access", "fraud-mlops:gcp:KeyAccess")
    grants = run.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert {g.inputs["cryptoKeyId"] for g in grants} == {KEY}
    assert {g.inputs["role"] for g in grants} == {"roles/cloudkms.cryptoKeyEncrypterDecrypter"}
    assert {g.name: g.inputs["member"] for g in grants} == {
        **{f"key-access-{a}": m for a, m in _agent_members().items()},
        "key-access-bigquery": (
            f"serviceAccount:bq-{PROJECT_NUMBER}@bigquery-encryption.iam.gserviceaccount.com"
        ),
        "key-access-storage": (
            f"serviceAccount:service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        ),
        "key-access-cloudfunctions": (
            f"serviceAccount:service-{PROJECT_NUMBER}@gcf-admin-robot.iam.gserviceaccount.com"
        ),
        "key-access-run": (
            f"serviceAccount:service-{PROJECT_NUMBER}@serverless-robot-prod.iam.gserviceaccount.com"
        ),
    }


def test_perimeter_dry_run_puts_project_in_spec_not_status() -> None:
    run = run_component(
        lambda: Perimeter(
            "perimeter",
            PerimeterArgs(project="p", access_policy="4242", perimeter_name="fraud_mlops_dev"),
        )
    )

    assert_component_shape(run, "perimeter", "fraud-mlops:gcp:Perimeter")
    (perimeter,) = run.of_type("gcp:accesscontextmanager/servicePerimeter:ServicePerimeter")
    assert perimeter.inputs["name"] == "accessPolicies/4242/servicePerimeters/fraud_mlops_dev"
    assert perimeter.inputs["useExplicitDryRunSpec"] is True
    assert perimeter.inputs["spec"]["resources"] == [f"projects/{PROJECT_NUMBER}"]
    assert "bigquery.googleapis.com" in perimeter.inputs["spec"]["restrictedServices"]
    assert "status" not in perimeter.inputs


def test_perimeter_enforced_puts_project_in_status() -> None:
    run = run_component(
        lambda: Perimeter(
            "perimeter",
            PerimeterArgs(project="p", access_policy="4242", perimeter_name="x", dry_run=False),
        )
    )

    (perimeter,) = run.of_type("gcp:accesscontextmanager/servicePerimeter:ServicePerimeter")
    assert perimeter.inputs["status"]["resources"] == [f"projects/{PROJECT_NUMBER}"]
    assert "spec" not in perimeter.inputs


def _restricted(run: MockRun) -> list[str]:
    (perimeter,) = run.of_type("gcp:accesscontextmanager/servicePerimeter:ServicePerimeter")
    return list(perimeter.inputs["spec"]["restrictedServices"])


def test_perimeter_with_kms_key_restricts_cloud_kms_and_artifact_registry() -> None:
    run = run_component(
        lambda: Perimeter(
            "perimeter",
            PerimeterArgs(project="p", access_policy="4242", perimeter_name="x", kms_key_name=KEY),
        )
    )

    restricted = _restricted(run)
    assert {"cloudkms.googleapis.com", "artifactregistry.googleapis.com"} <= set(restricted)
    assert set(PERIMETER_SERVICES) <= set(restricted)
    assert restricted == sorted(set(restricted))


def test_perimeter_without_key_leaves_cloud_kms_out() -> None:
    run = run_component(
        lambda: Perimeter(
            "perimeter", PerimeterArgs(project="p", access_policy="4242", perimeter_name="x")
        )
    )

    restricted = _restricted(run)
    assert "cloudkms.googleapis.com" not in restricted
    assert set(restricted) == set(PERIMETER_SERVICES)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (
            lambda: KeyAccessArgs(
                project="p", kms_key_name="not-a-key", agent_members=_agent_members()
            ),
            "KeyAccessArgs.kms_key_name",
        ),
        (
            lambda: KeyAccessArgs(project="p", kms_key_name=KEY, agent_members={}),
            "KeyAccessArgs.agent_members",
        ),
        (
            lambda: PerimeterArgs(project="p", access_policy="abc", perimeter_name="x"),
            "PerimeterArgs.access_policy",
        ),
        (
            lambda: PerimeterArgs(
                project="p", access_policy="1", perimeter_name="x", services=("bigquery",)
            ),
            "PerimeterArgs.services",
        ),
        (
            lambda: PerimeterArgs(
                project="p", access_policy="1", perimeter_name="x", kms_key_name="k"
            ),
            "PerimeterArgs.kms_key_name",
        ),
        (lambda: AuditLogsArgs(project="p", services=()), "AuditLogsArgs.services"),
    ],
)
def test_security_args_invalid_value_raises_naming_field(args, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=field):
        args().validate()
