"""The whole program (``stacks.program.main``), as ``pulumi up`` runs it, under mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.config import RuntimeConfig
from app.pipeline.compile import compile_pipeline
from components.orchestration import CONFIG_OBJECT
from components.permissions import CUSTOM_ROLES, ENDPOINT_PREDICTOR, CustomRoleSpec
from components.security import CMEK_PERIMETER_SERVICES
from components.serving_endpoint import is_endpoint_id
from components.training_pipeline import template_object_name
from stacks import program
from stacks.config import NAMESPACE, StackConfigError
from stacks.mocks import MockRun, run_with_mocks
from stacks.plan import stack_config
from tests.infra.conftest import ROOT, SERVING_REF, TRAINER_REF, make_source_tree, run_program

COMPONENTS = {
    "services": "ProjectServices",
    "audit-logs": "AuditLogs",
    "service-agents": "ServiceAgents",
    "identity": "Identity",
    "card-key": "CardKeySecret",
    "warehouse": "WarehouseDatasets",
    "landing": "Landing",
    "feature-store": "FeatureStore",
    "images": "ContainerImages",
    "training-pipeline": "TrainingPipeline",
    "serving": "ServingEndpoint",
    "access": "Access",
    "orchestration": "Orchestration",
    "prediction": "PredictionFunction",
}
STATEFUL = (
    "gcp:bigquery/dataset:Dataset",
    "gcp:bigquery/table:Table",
    "gcp:storage/bucket:Bucket",
    "gcp:secretmanager/secret:Secret",
    "gcp:vertex/aiFeatureOnlineStore:AiFeatureOnlineStore",
    "gcp:composer/environment:Environment",
    "gcp:vertex/aiEndpoint:AiEndpoint",
    "gcp:pubsub/topic:Topic",
    "gcp:pubsub/subscription:Subscription",
    "gcp:vertex/aiFeatureOnlineStoreFeatureview:AiFeatureOnlineStoreFeatureview",
    "gcp:artifactregistry/repository:Repository",
)


def _config(run: MockRun) -> RuntimeConfig:
    return RuntimeConfig.from_json(json.dumps(run.outputs["runtimeConfig"]))


def _one(run: MockRun, type_token: str) -> dict[str, object]:
    (r,) = run.of_type(type_token)
    return r.inputs


def test_program_dev_creates_each_component_at_stack_level(dev_run: MockRun) -> None:
    top = {
        r.name: r.type.rsplit(":", 1)[-1]
        for r in dev_run.registrations
        if not r.custom and r.parent_type == "pulumi:pulumi:Stack"
    }

    assert top == COMPONENTS


@pytest.mark.parametrize("stack_run", ["dev_run", "prod_run"])
def test_program_every_resource_belongs_to_a_component(
    stack_run: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(stack_run)
    loose = [
        r.name for r in run.registrations if r.custom and r.parent_type == "pulumi:pulumi:Stack"
    ]

    assert loose == []


def test_program_runtime_config_parses_into_app_config_and_names_real_resources(
    dev_run: MockRun,
) -> None:
    cfg = _config(dev_run)
    datasets = {r.inputs["datasetId"] for r in dev_run.of_type("gcp:bigquery/dataset:Dataset")}
    buckets = {r.inputs["name"] for r in dev_run.of_type("gcp:storage/bucket:Bucket")}
    objects = {
        (r.inputs["bucket"], r.inputs["name"])
        for r in dev_run.of_type("gcp:storage/bucketObject:BucketObject")
    }
    store = _one(dev_run, "gcp:vertex/aiFeatureOnlineStore:AiFeatureOnlineStore")
    view = _one(
        dev_run, "gcp:vertex/aiFeatureOnlineStoreFeatureview:AiFeatureOnlineStoreFeatureview"
    )
    endpoint = _one(dev_run, "gcp:vertex/aiEndpoint:AiEndpoint")
    sub = dev_run.by_name("landing-dag").inputs
    dead_sub = dev_run.by_name("landing-dead-letters").inputs
    topics = {
        f"projects/{r.inputs['project']}/topics/{r.inputs['name']}": r.name
        for r in dev_run.of_type("gcp:pubsub/topic:Topic")
    }
    env = _one(dev_run, "gcp:composer/environment:Environment")
    secret = _one(dev_run, "gcp:secretmanager/secret:Secret")
    accounts = {
        f"{r.inputs['accountId']}@{r.inputs['project']}.iam.gserviceaccount.com": r.name
        for r in dev_run.of_type("gcp:serviceaccount/account:Account")
    }

    assert cfg.environment == "dev"
    assert {
        cfg.warehouse.raw_dataset,
        cfg.warehouse.training_dataset,
        cfg.warehouse.snapshot_dataset,
        cfg.warehouse.lineage_dataset,
    } <= datasets  # type: ignore[union-attr]
    assert (cfg.online_store.online_store_id, cfg.online_store.feature_view_id) == (  # type: ignore[union-attr]
        store["name"],
        view["name"],
    )
    assert cfg.endpoint.endpoint_id == endpoint["name"]  # type: ignore[union-attr]
    assert cfg.landing.bucket in buckets  # type: ignore[union-attr]
    assert cfg.landing.subscription == f"projects/{sub['project']}/subscriptions/{sub['name']}"  # type: ignore[union-attr]
    # The dead-letter path the DAG's failure callback, `status` and `retry` use.
    assert cfg.landing.dead_letter_subscription == (  # type: ignore[union-attr]
        f"projects/{dead_sub['project']}/subscriptions/{dead_sub['name']}"
    )
    assert topics[cfg.landing.topic] == "landing-topic"  # type: ignore[union-attr,index]
    assert topics[cfg.landing.dead_letter_topic] == "landing-dead-letter-topic"  # type: ignore[union-attr,index]
    assert sub["deadLetterPolicy"]["deadLetterTopic"] == cfg.landing.dead_letter_topic  # type: ignore[index,union-attr]
    assert cfg.orchestrator.environment == env["name"]  # type: ignore[union-attr]
    assert cfg.card_key.secret_version.split("/")[3] == secret["secretId"]  # type: ignore[union-attr]
    assert accounts[cfg.pipeline.service_account] == "identity-training"  # type: ignore[union-attr]
    assert accounts[cfg.online_store.sync_service_account] == "identity-sync"  # type: ignore[union-attr]
    assert cfg.online_store.source_table_uri.endswith(".card_features")  # type: ignore[union-attr]
    template_bucket, template_object = cfg.pipeline.template_uri.removeprefix("gs://").split("/", 1)  # type: ignore[union-attr]
    assert (template_bucket, template_object) in objects
    assert cfg.pipeline.pipeline_root.removeprefix("gs://").split("/")[0] == template_bucket  # type: ignore[union-attr]


@pytest.mark.parametrize("stack_run", ["dev_run", "prod_run"])
def test_program_endpoint_id_is_one_vertex_accepts_and_the_runtime_config_names(
    stack_run: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(stack_run)
    endpoint = _one(run, "gcp:vertex/aiEndpoint:AiEndpoint")

    assert is_endpoint_id(endpoint["name"]), endpoint["name"]  # type: ignore[arg-type]
    assert _config(run).endpoint.endpoint_id == endpoint["name"]  # type: ignore[union-attr]


def test_program_runtime_config_is_injected_into_function_and_composer(dev_run: MockRun) -> None:
    exported = json.dumps(dev_run.outputs["runtimeConfig"])
    fn = _one(dev_run, "gcp:cloudfunctionsv2/function:Function")
    (config_obj,) = [
        r
        for r in dev_run.of_type("gcp:storage/bucketObject:BucketObject")
        if r.inputs["name"] == CONFIG_OBJECT
    ]

    in_function = fn["serviceConfig"]["environmentVariables"]["FRAUD_MLOPS_CONFIG"]  # type: ignore[index]
    assert RuntimeConfig.from_json(in_function) == RuntimeConfig.from_json(exported)
    assert RuntimeConfig.from_json(config_obj.inputs["content"]) == RuntimeConfig.from_json(
        exported
    )
    assert config_obj.parent_name == "orchestration"


def test_program_function_and_composer_run_as_their_own_accounts(dev_run: MockRun) -> None:
    fn = _one(dev_run, "gcp:cloudfunctionsv2/function:Function")
    env = _one(dev_run, "gcp:composer/environment:Environment")

    assert fn["serviceConfig"]["serviceAccountEmail"].startswith("fmo-dev-inference@")  # type: ignore[index]
    assert env["config"]["nodeConfig"]["serviceAccount"].startswith("fmo-dev-orch@")  # type: ignore[index]


def test_program_prod_protects_every_stateful_resource(prod_run: MockRun) -> None:
    stateful = [r for r in prod_run.registrations if r.type in STATEFUL]

    assert {r.type for r in stateful} == set(STATEFUL)
    unprotected = [r.name for r in stateful if not r.protect]
    assert unprotected == []
    assert all(r.inputs.get("forceDestroy") is not True for r in stateful)
    assert all(
        r.inputs["deletionProtection"] is True for r in prod_run.of_type("gcp:bigquery/table:Table")
    )


def test_program_dev_leaves_resources_deletable(dev_run: MockRun) -> None:
    assert not [r.name for r in dev_run.registrations if r.protect]


def test_program_prod_applies_one_kms_key_everywhere_gcp_supports(prod_run: MockRun) -> None:
    key = "projects/fraud-mlops-prod/locations/us-central1/keyRings/fraud-mlops/cryptoKeys/data"
    paths = {
        "gcp:bigquery/dataset:Dataset": ("defaultEncryptionConfiguration", "kmsKeyName"),
        "gcp:storage/bucket:Bucket": ("encryption", "defaultKmsKeyName"),
        "gcp:pubsub/topic:Topic": ("kmsKeyName",),
        "gcp:composer/environment:Environment": ("config", "encryptionConfig", "kmsKeyName"),
        "gcp:vertex/aiEndpoint:AiEndpoint": ("encryptionSpec", "kmsKeyName"),
        "gcp:vertex/aiFeatureOnlineStore:AiFeatureOnlineStore": ("encryptionSpec", "kmsKeyName"),
        "gcp:artifactregistry/repository:Repository": ("kmsKeyName",),
        "gcp:cloudfunctionsv2/function:Function": ("kmsKeyName",),
    }
    for type_token, path in paths.items():
        regs = prod_run.of_type(type_token)
        assert regs, type_token
        for r in regs:
            value: object = r.inputs
            for part in path:
                value = value[part]  # type: ignore[index]
            assert value == key, r.name
    secret = _one(prod_run, "gcp:secretmanager/secret:Secret")
    assert secret["replication"] == {
        "userManaged": {
            "replicas": [
                {"location": "us-central1", "customerManagedEncryption": {"kmsKeyName": key}}
            ]
        }
    }


def test_program_prod_key_grants_exist_before_encrypted_resources(prod_run: MockRun) -> None:
    grants = {r.urn for r in prod_run.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")}
    env = prod_run.of_type("gcp:composer/environment:Environment")[0]
    endpoint = prod_run.of_type("gcp:vertex/aiEndpoint:AiEndpoint")[0]

    assert grants and grants <= set(env.depends_on)
    assert grants <= set(endpoint.depends_on)
    for type_token in ("gcp:cloudfunctionsv2/function:Function", "gcp:secretmanager/secret:Secret"):
        (r,) = prod_run.of_type(type_token)
        assert grants <= set(r.depends_on), type_token


def test_program_prod_key_grants_wait_for_created_service_agents(prod_run: MockRun) -> None:
    agents = {
        r.inputs["service"].split(".")[0]: r.urn
        for r in prod_run.of_type("gcp:projects/serviceIdentity:ServiceIdentity")
    }
    grants = {r.name: r for r in prod_run.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")}

    assert sorted(agents) == [
        "aiplatform",
        "artifactregistry",
        "composer",
        "pubsub",
        "secretmanager",
    ]
    for agent, urn in agents.items():
        assert urn in grants[f"key-access-{agent}"].depends_on, agent


def test_program_vertex_composer_and_pubsub_agents_created_once_and_reused_by_grants(
    dev_run: MockRun,
) -> None:
    identities = dev_run.of_type("gcp:projects/serviceIdentity:ServiceIdentity")
    by_service = {r.inputs["service"]: r for r in identities}
    vertex_grants = [r for r in dev_run.registrations if r.name.startswith("access-vertex-agent-")]
    composer_grant = dev_run.by_name(
        "access-composer-agent-composer-ServiceAgentV2Ext-orchestration"
    )
    pubsub_grants = [r for r in dev_run.registrations if r.name.startswith("landing-pubsub-agent-")]

    # Without a key only the agents Access and Landing grant to.
    assert sorted(by_service) == [
        "aiplatform.googleapis.com",
        "composer.googleapis.com",
        "pubsub.googleapis.com",
    ]
    assert len(identities) == 3
    # Pub/Sub's agent forwards to the dead-letter topic: publisher there, subscriber on
    # the landing subscription, each granted once the agent exists.
    assert len(pubsub_grants) == 2
    for grant in pubsub_grants:
        assert by_service["pubsub.googleapis.com"].urn in grant.depends_on
    assert {r.parent_name for r in identities} == {"service-agents"}
    assert len(vertex_grants) == 3  # features table, predictions dataset, pipeline bucket
    for grant in vertex_grants:
        assert by_service["aiplatform.googleapis.com"].urn in grant.depends_on
    assert by_service["composer.googleapis.com"].urn in composer_grant.depends_on


def test_program_dev_uses_google_managed_keys(dev_run: MockRun) -> None:
    assert not dev_run.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert all("encryption" not in r.inputs for r in dev_run.of_type("gcp:storage/bucket:Bucket"))


def test_program_prod_composer_is_private_and_larger(prod_run: MockRun, dev_run: MockRun) -> None:
    prod_env = _one(prod_run, "gcp:composer/environment:Environment")["config"]
    dev_env = _one(dev_run, "gcp:composer/environment:Environment")["config"]

    assert prod_env["enablePrivateEnvironment"] is True  # type: ignore[index]
    assert dev_env["enablePrivateEnvironment"] is False  # type: ignore[index]
    assert prod_env["environmentSize"] == "ENVIRONMENT_SIZE_MEDIUM"  # type: ignore[index]


@pytest.mark.parametrize("stack_run", ["dev_run", "prod_run"])
def test_program_creates_no_service_account_or_hmac_keys(
    stack_run: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(stack_run)
    types = {r.type for r in run.registrations}

    assert "gcp:serviceaccount/key:Key" not in types
    assert "gcp:storage/hmacKey:HmacKey" not in types
    assert "gcp:serviceaccount/account:Account" in types  # the check looks at real output


def test_program_enables_audit_logs_and_apis(dev_run: MockRun) -> None:
    audited = {
        r.inputs["service"] for r in dev_run.of_type("gcp:projects/iAMAuditConfig:IAMAuditConfig")
    }
    apis = {r.inputs["service"] for r in dev_run.of_type("gcp:projects/service:Service")}

    assert audited == {"bigquery.googleapis.com", "aiplatform.googleapis.com"}
    assert {
        "aiplatform.googleapis.com",
        "cloudresourcemanager.googleapis.com",
        "composer.googleapis.com",
        "iamcredentials.googleapis.com",
        "run.googleapis.com",
    } <= apis
    assert "accesscontextmanager.googleapis.com" not in apis


def test_program_vpc_perimeter_only_when_configured(tmp_path: Path, dev_run: MockRun) -> None:
    run = run_program("dev", tmp_path, **{"vpcServiceControls.accessPolicy": "987654"})

    perimeters = "gcp:accesscontextmanager/servicePerimeter:ServicePerimeter"
    apis = {r.inputs["service"] for r in run.of_type("gcp:projects/service:Service")}
    assert len(run.of_type(perimeters)) == 1
    assert dev_run.of_type(perimeters) == []
    assert "accesscontextmanager.googleapis.com" in apis


def _perimeter_services(run: MockRun) -> set[str]:
    (perimeter,) = run.of_type("gcp:accesscontextmanager/servicePerimeter:ServicePerimeter")
    return set(perimeter.inputs["spec"]["restrictedServices"])


def test_program_perimeter_with_a_key_restricts_kms_and_artifact_registry(
    tmp_path: Path,
) -> None:
    run = run_program("prod", tmp_path, **{"vpcServiceControls.accessPolicy": "987654"})

    # Composer's CMEK setup in a perimeter needs both restricted.
    assert {"cloudkms.googleapis.com", "artifactregistry.googleapis.com"} <= (
        _perimeter_services(run)
    )
    assert set(CMEK_PERIMETER_SERVICES) <= _perimeter_services(run)


def test_program_perimeter_restricts_every_data_api_the_stack_calls(tmp_path: Path) -> None:
    run = run_program("dev", tmp_path, **{"vpcServiceControls.accessPolicy": "987654"})
    enabled = {r.inputs["service"] for r in run.of_type("gcp:projects/service:Service")}

    # Each enabled API is restricted, or left out for a stated reason.
    not_restricted = {
        "accesscontextmanager.googleapis.com": "the perimeter's own control plane",
        "cloudbuild.googleapis.com": "VPC-SC covers private pools only; the function "
        "builds on the default pool",
        "cloudkms.googleapis.com": "only with a key (dev has none)",
        "cloudresourcemanager.googleapis.com": "the deployer's project and IAM calls",
        "iam.googleapis.com": "the deployer's service accounts and roles",
        "logging.googleapis.com": "the function's builds log from outside the perimeter",
    }
    assert enabled - _perimeter_services(run) == set(not_restricted)
    # The DAG mints the sync account's tokens from inside Composer.
    assert "iamcredentials.googleapis.com" in _perimeter_services(run)


# Each lookup the program makes, and the API it calls.
LOOKUP_APIS = {
    "gcp:organizations/getProject:getProject": "cloudresourcemanager.googleapis.com",
    "gcp:bigquery/getDefaultServiceAccount:getDefaultServiceAccount": "bigquery.googleapis.com",
    "gcp:storage/getProjectServiceAccount:getProjectServiceAccount": "storage.googleapis.com",
}


def test_program_lookups_are_issued_after_their_apis_are_enabled(tmp_path: Path) -> None:
    # prod (a key) with a perimeter: every lookup the program has.
    run = run_program("prod", tmp_path, **{"vpcServiceControls.accessPolicy": "987654"})
    enabled = {r.inputs["service"]: r.urn for r in run.of_type("gcp:projects/service:Service")}

    assert {i.token for i in run.invocations} == set(LOOKUP_APIS)
    assert len(run.invocations) >= 5  # key access, landing, perimeter, function
    for invocation in run.invocations:
        api = LOOKUP_APIS[invocation.token]
        assert enabled[api] in invocation.depends_on, (invocation.token, invocation.args)


def test_program_runs_for_dev_then_prod_without_leaking_state(
    tmp_path: Path, dev_run: MockRun, prod_run: MockRun
) -> None:
    again = run_program("dev", tmp_path)

    assert sorted((r.type, r.name) for r in again.registrations) == sorted(
        (r.type, r.name) for r in dev_run.registrations
    )
    assert not [
        r for r in again.registrations if "fraud-mlops-prod" in json.dumps(r.inputs, default=str)
    ]
    assert again.outputs["runtimeConfig"] == dev_run.outputs["runtimeConfig"]


def test_program_invalid_config_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(StackConfigError, match=r"fraud-mlops:featureStore\.cpuTarget"):
        run_program("dev", tmp_path, **{"featureStore.cpuTarget": "99"})


def test_program_without_a_prebuilt_template_compiles_and_uploads_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `pulumi preview` runs on a fresh checkout: the project's defaults, no build/.
    build_dir = tmp_path / "build-dir"
    monkeypatch.setattr(program, "BUILD_DIR", build_dir)
    root = make_source_tree(tmp_path / "repo")
    values = stack_config(ROOT, "dev")
    assert not values.get(f"{NAMESPACE}:pipeline.templatePath")
    values[f"{NAMESPACE}:images.trainer"] = TRAINER_REF
    values[f"{NAMESPACE}:images.serving"] = SERVING_REF

    run = run_with_mocks(lambda: program.main(root), project=NAMESPACE, stack="dev", config=values)

    (template,) = [
        r
        for r in run.of_type("gcp:storage/bucketObject:BucketObject")
        if r.name == "training-pipeline-template"
    ]
    uploaded = Path(template.inputs["source"].path)
    expected = compile_pipeline(tmp_path / "expected.yaml", image=TRAINER_REF).read_bytes()
    assert uploaded.parent == build_dir and uploaded.read_bytes() == expected
    assert template.inputs["name"] == template_object_name(uploaded)
    assert _config(run).pipeline.template_uri.endswith("/" + template.inputs["name"])  # type: ignore[union-attr]
    assert not (root / "build").exists()


def test_program_missing_template_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"fraud-mlops:pipeline\.templatePath"):
        run_program("dev", tmp_path, **{"pipeline.templatePath": str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize("stack_run", ["dev_run", "prod_run"])
def test_program_children_are_named_from_their_component(
    stack_run: str, request: pytest.FixtureRequest
) -> None:
    run: MockRun = request.getfixturevalue(stack_run)
    components = {r.name for r in run.registrations if not r.custom}
    misnamed = [
        r.name
        for r in run.registrations
        if r.custom and r.parent_name in components and not r.name.startswith(f"{r.parent_name}-")
    ]

    assert misnamed == []


def _run_entry_point(tmp_path: Path, **overrides: str) -> MockRun:
    """Run ``stacks/__main__.py`` the way Pulumi's Python host does (as a script)."""
    import runpy

    from stacks.config import NAMESPACE
    from stacks.mocks import run_with_mocks
    from stacks.plan import stack_config
    from tests.infra.conftest import ROOT

    values = stack_config(ROOT, "dev")
    template = tmp_path / "pipeline.yaml"
    template.write_text("pipelineInfo: {}\n")
    values[f"{NAMESPACE}:pipeline.templatePath"] = str(template)
    values[f"{NAMESPACE}:images.trainer"] = TRAINER_REF
    values[f"{NAMESPACE}:images.serving"] = SERVING_REF
    values.update({f"{NAMESPACE}:{k}": v for k, v in overrides.items()})

    def entry() -> None:
        runpy.run_path(str(ROOT / "stacks" / "__main__.py"), run_name="__main__")

    return run_with_mocks(entry, project=NAMESPACE, stack="dev", config=values)


def test_entry_point_runs_the_same_program_as_plan(tmp_path: Path, dev_run: MockRun) -> None:
    run = _run_entry_point(tmp_path)

    assert sorted(
        (r.type, r.name) for r in run.registrations if "BucketObject" not in r.type
    ) == sorted((r.type, r.name) for r in dev_run.registrations if "BucketObject" not in r.type)


def test_entry_point_config_error_is_reported_without_traceback(tmp_path: Path) -> None:
    import pulumi

    with pytest.raises(pulumi.RunError, match=r"fraud-mlops:function\.maxInstances"):
        _run_entry_point(tmp_path, **{"function.maxInstances": "0"})


def test_program_access_component_holds_only_grants_and_the_predictor_role(
    dev_run: MockRun,
) -> None:
    from stacks.inventory import is_iam

    under_access = [r for r in dev_run.registrations if r.parent_name == "access"]
    kinds = {r.type for r in under_access if not is_iam(r.type)}

    assert kinds == {"gcp:projects/iAMCustomRole:IAMCustomRole"}
    assert len(under_access) > 20


def _custom_role(run: MockRun, role_id: str) -> dict[str, object]:
    (r,) = [
        r
        for r in run.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")
        if r.inputs["roleId"] == role_id
    ]
    return r.inputs


def test_program_inference_endpoint_role_is_predict_and_get_only(dev_run: MockRun) -> None:
    role = _custom_role(dev_run, "fraud_mlops_dev_endpoint_predictor")
    (grant,) = [
        g
        for g in dev_run.of_type("gcp:vertex/aiEndpointIamMember:AiEndpointIamMember")
        if "fmo-dev-inference@" in g.inputs["member"]
    ]

    assert role["roleId"] == "fraud_mlops_dev_endpoint_predictor"
    assert role["project"] == "fraud-mlops-dev"
    assert sorted(role["permissions"]) == sorted(ENDPOINT_PREDICTOR.permissions)  # type: ignore[call-overload]
    assert (
        grant.inputs["role"] == "projects/fraud-mlops-dev/roles/fraud_mlops_dev_endpoint_predictor"
    )
    assert grant.inputs["member"] == (
        "serviceAccount:fmo-dev-inference@fraud-mlops-dev.iam.gserviceaccount.com"
    )


@pytest.mark.parametrize("spec", CUSTOM_ROLES, ids=lambda r: r.kind)
def test_program_custom_role_created_exactly_as_specified(
    dev_run: MockRun, spec: CustomRoleSpec
) -> None:
    role = _custom_role(dev_run, f"fraud_mlops_dev_{spec.kind}")

    assert role["project"] == "fraud-mlops-dev"
    assert role["stage"] == "GA"
    assert (role["title"], role["description"]) == (spec.title, spec.description)
    # Sorted on creation, so reordering the spec is no update.
    assert role["permissions"] == sorted(spec.permissions)


def test_program_each_custom_role_created_once_under_access(dev_run: MockRun) -> None:
    roles = dev_run.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")

    assert sorted(r.inputs["roleId"] for r in roles) == [
        "fraud_mlops_dev_endpoint_deployer",
        "fraud_mlops_dev_endpoint_predictor",
        "fraud_mlops_dev_feature_view_syncer",
        "fraud_mlops_dev_pipeline_launcher",
        "fraud_mlops_dev_training_pipeline",
    ]
    assert {r.parent_name for r in roles} == {"access"}


def test_program_training_and_orchestration_hold_their_custom_roles(dev_run: MockRun) -> None:
    role = "projects/fraud-mlops-dev/roles/fraud_mlops_dev_{}".format
    orch = "serviceAccount:fmo-dev-orch@fraud-mlops-dev.iam.gserviceaccount.com"
    train = "serviceAccount:fmo-dev-train@fraud-mlops-dev.iam.gserviceaccount.com"
    project = {
        (g.inputs["member"], g.inputs["role"])
        for g in dev_run.of_type("gcp:projects/iAMMember:IAMMember")
        if "aiplatform" in g.inputs["role"] or "/roles/" in g.inputs["role"]
    }
    endpoint = {
        (g.inputs["member"], g.inputs["role"])
        for g in dev_run.of_type("gcp:vertex/aiEndpointIamMember:AiEndpointIamMember")
    }
    view = {
        (g.inputs["member"], g.inputs["role"])
        for g in dev_run.of_type(
            "gcp:vertex/aiFeatureOnlineStoreFeatureviewIamMember:"
            "AiFeatureOnlineStoreFeatureviewIamMember"
        )
    }

    assert project == {(orch, role("pipeline_launcher")), (train, role("training_pipeline"))}
    assert (train, role("endpoint_deployer")) in endpoint and len(endpoint) == 2
    assert (orch, role("feature_view_syncer")) in view and len(view) == 2
