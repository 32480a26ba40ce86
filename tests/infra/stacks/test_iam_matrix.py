"""The IAM bindings the program really creates equal the declared table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from components import permissions
from stacks.iam_matrix import (
    BASIC_ROLES,
    CUSTOM_ROLES,
    PUBLIC_MEMBERS,
    TABLE,
    Binding,
    expected_bindings,
    expected_custom_roles,
)
from stacks.inventory import bindings, custom_roles
from stacks.mocks import PROJECT_NUMBER, MockRun, Registration
from stacks.plan import parse, stack_config
from tests.infra.conftest import ROOT, run_program


def _actual(run: MockRun) -> Counter[Binding]:
    return Counter(b for b, _ in bindings(run.registrations))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_iam_matrix_equals_declared_least_privilege_table(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(f"{stack}_run")
    expected = expected_bindings(parse(stack_config(ROOT, stack)), PROJECT_NUMBER)
    actual = _actual(run)

    assert sorted(set(actual) - set(expected)) == [], "bindings created but not declared"
    assert sorted(set(expected) - set(actual)) == [], "bindings declared but not created"
    assert [b for b, n in actual.items() if n > 1] == [], "a binding is made twice"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_iam_matrix_has_no_basic_role_and_no_public_principal(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(f"{stack}_run")
    actual = set(_actual(run))

    assert len(actual) > 20  # the check looks at the real matrix
    assert [b for b in actual if b.role in BASIC_ROLES] == []
    assert [b for b in actual if b.member in PUBLIC_MEMBERS] == []


def test_iam_matrix_prod_grants_the_key_to_agents_only(prod_run: MockRun) -> None:
    kms = [b for b in _actual(prod_run) if b.resource.startswith("//cloudkms.")]

    assert sorted(b.member.split("@")[1] for b in kms) == [
        "bigquery-encryption.iam.gserviceaccount.com",
        "cloudcomposer-accounts.iam.gserviceaccount.com",
        "gcf-admin-robot.iam.gserviceaccount.com",
        "gcp-sa-aiplatform.iam.gserviceaccount.com",
        "gcp-sa-artifactregistry.iam.gserviceaccount.com",
        "gcp-sa-pubsub.iam.gserviceaccount.com",
        "gcp-sa-secretmanager.iam.gserviceaccount.com",
        "gs-project-accounts.iam.gserviceaccount.com",
        "serverless-robot-prod.iam.gserviceaccount.com",
    ]
    assert all(
        b.member.startswith("serviceAccount:") and "gserviceaccount" in b.member for b in kms
    )
    assert not [b for b in kms if "fmo-prod-" in b.member]


def test_iam_matrix_public_flag_adds_only_all_users_invoker(
    tmp_path: Path, dev_run: MockRun
) -> None:
    run = run_program("dev", tmp_path, **{"function.public": "true"})
    cfg = parse({**stack_config(ROOT, "dev"), "fraud-mlops:function.public": "true"})

    added = set(_actual(run)) - set(_actual(dev_run))
    assert [(b.member, b.role) for b in added] == [("allUsers", "roles/run.invoker")]
    assert set(_actual(run)) == set(expected_bindings(cfg, PROJECT_NUMBER))


def test_iam_matrix_inference_reaches_only_view_endpoint_and_secret(dev_run: MockRun) -> None:
    scopes = {
        b.resource.split("/")[2] + ":" + b.resource.rsplit("/", 2)[-2]
        for b in _actual(dev_run)
        if "fmo-dev-inference@" in b.member
    }

    assert scopes == {
        "aiplatform.googleapis.com:featureViews",
        "aiplatform.googleapis.com:endpoints",
        "secretmanager.googleapis.com:secrets",
    }


def test_iam_table_project_level_grants_each_listed_once_with_reason() -> None:
    project_level = [
        (g.member, g.role) for g in TABLE if g.resource == "project" and not g.condition
    ]

    assert len(project_level) == len(set(project_level))
    assert all(g.reason for g in TABLE)
    # The roles GCP offers no narrower scope for; anything else belongs on a resource.
    assert {role for _, role in project_level} == {
        "roles/composer.worker",
        "roles/bigquery.jobUser",
        "roles/logging.logWriter",
        "custom:pipeline-launcher",
        "custom:training-pipeline",
    }


def test_iam_table_build_account_holds_run_builder_rights_each_scoped() -> None:
    build = {(g.role, g.resource): g for g in TABLE if g.member == "sa:build"}

    # roles/run.builder's rights (Cloud Run's role for a build account), each scoped:
    # logs on the project; objects.get on the function's source bucket and, held by a
    # condition, on the bucket Cloud Functions stages it in; artifact upload, download
    # and delete on the function's repository.
    assert set(build) == {
        ("roles/logging.logWriter", "project"),
        ("roles/storage.objectViewer", "bucket:source"),
        ("roles/storage.objectViewer", "project"),
        ("roles/artifactregistry.repoAdmin", "repository"),
    }
    staged = build[("roles/storage.objectViewer", "project")]
    assert staged.condition.format(number="N", region="R") == (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-N-R")'
    )
    conditional = [g for g in TABLE if g.condition]
    assert conditional == [staged]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_iam_matrix_custom_roles_equal_declared_permissions(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(f"{stack}_run")
    declared = expected_custom_roles(parse(stack_config(ROOT, stack)))

    assert custom_roles(run.registrations) == declared
    assert len(declared) == len(CUSTOM_ROLES) == 5


def test_iam_table_custom_roles_are_the_permissions_module_and_each_is_granted() -> None:
    # The table declares no permissions of its own: it names the one module's roles.
    assert {r.symbol: r for r in permissions.CUSTOM_ROLES} == CUSTOM_ROLES
    # Every declared custom role is used by a grant, and every custom grant is declared.
    used = {g.role for g in TABLE if g.role.startswith("custom:")}
    assert used == set(CUSTOM_ROLES)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_iam_matrix_no_service_account_holds_aiplatform_user(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(f"{stack}_run")
    broad = {"roles/aiplatform.user", "roles/aiplatform.admin"}

    assert [b for b in _actual(run) if b.role in broad] == []
    assert [g for g in TABLE if g.role in broad] == []
    # Vertex AI rights of the workload accounts come only from the stack's custom roles,
    # except the inference account's read of the online features.
    vertex = {
        (b.member.split("@")[0].removeprefix("serviceAccount:"), b.role.rsplit("/", 1)[-1])
        for b in _actual(run)
        if b.member.startswith(f"serviceAccount:fmo-{stack}-")
        and ("aiplatform" in b.role or "/roles/" in b.role)
    }
    assert vertex == {
        (f"fmo-{stack}-orch", f"fraud_mlops_{stack}_pipeline_launcher"),
        (f"fmo-{stack}-orch", f"fraud_mlops_{stack}_feature_view_syncer"),
        (f"fmo-{stack}-train", f"fraud_mlops_{stack}_training_pipeline"),
        (f"fmo-{stack}-train", f"fraud_mlops_{stack}_endpoint_deployer"),
        (f"fmo-{stack}-inference", f"fraud_mlops_{stack}_endpoint_predictor"),
        (f"fmo-{stack}-inference", "aiplatform.featurestoreDataViewer"),
    }


def test_iam_matrix_training_and_orchestration_vertex_scopes(dev_run: MockRun) -> None:
    scopes = {
        (b.member.split("@")[0].removeprefix("serviceAccount:"), b.resource.rsplit("/", 2)[-2])
        for b in _actual(dev_run)
        if b.role.startswith("projects/fraud-mlops-dev/roles/")
    }

    assert scopes == {
        ("fmo-dev-orch", "projects"),
        ("fmo-dev-orch", "featureViews"),
        ("fmo-dev-train", "projects"),
        ("fmo-dev-train", "endpoints"),
        ("fmo-dev-inference", "endpoints"),
    }


def _registration(type_token: str, **inputs: str) -> Registration:
    return Registration(
        urn="urn:x", type=type_token, name="r", parent_urn="", custom=True, protect=False,
        inputs={"member": "user:a@example.com", "role": "roles/viewer", **inputs},
    )  # fmt: skip


def test_bindings_authoritative_iam_resource_is_rejected() -> None:
    reg = _registration("gcp:projects/iAMBinding:IAMBinding", project="p")

    with pytest.raises(ValueError, match="authoritative"):
        bindings([reg])


def test_bindings_unmapped_iam_member_type_is_rejected() -> None:
    reg = _registration("gcp:spanner/databaseIAMMember:DatabaseIAMMember", database="d")

    with pytest.raises(ValueError, match="no IAM matrix mapping"):
        bindings([reg])


def test_iam_matrix_dead_letter_path_grants_exactly_its_users(dev_run: MockRun) -> None:
    pubsub = "//pubsub.googleapis.com/projects/fraud-mlops-dev"
    orch = "serviceAccount:fmo-dev-orch@fraud-mlops-dev.iam.gserviceaccount.com"
    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    storage = f"serviceAccount:service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
    landing = {
        (b.member, b.role, b.resource)
        for b in _actual(dev_run)
        if b.resource.startswith(f"{pubsub}/")
    }

    assert landing == {
        # GCS announces; the DAG trigger consumes.
        (storage, "roles/pubsub.publisher", f"{pubsub}/topics/fraud-mlops-dev-landing"),
        (orch, "roles/pubsub.subscriber", f"{pubsub}/subscriptions/fraud-mlops-dev-landing-dag"),
        # The failure callback dead-letters; `status` lists, `retry` takes and republishes.
        (orch, "roles/pubsub.publisher", f"{pubsub}/topics/fraud-mlops-dev-landing-dead-letters"),
        (
            orch,
            "roles/pubsub.subscriber",
            f"{pubsub}/subscriptions/fraud-mlops-dev-landing-dag-dead-letters",
        ),
        (orch, "roles/pubsub.publisher", f"{pubsub}/topics/fraud-mlops-dev-landing"),
        # Pub/Sub's own dead-letter policy forwards as its agent.
        (agent, "roles/pubsub.publisher", f"{pubsub}/topics/fraud-mlops-dev-landing-dead-letters"),
        (agent, "roles/pubsub.subscriber", f"{pubsub}/subscriptions/fraud-mlops-dev-landing-dag"),
    }
