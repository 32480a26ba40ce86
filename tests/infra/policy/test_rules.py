"""The policy pack's rules, called directly (no Pulumi CLI)."""

from __future__ import annotations

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from policy import pack, rules
from stacks.mocks import MockRun

KEY = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
BUCKET = "gcp:storage/bucket:Bucket"
SECURE_BUCKET = {"uniformBucketLevelAccess": True, "publicAccessPrevention": "enforced"}


def _r(
    type_token: str, stack: str = "dev", protect: bool = False, **props: object
) -> rules.Resource:
    return rules.Resource(type=type_token, props=props, stack=stack, name="res", protect=protect)


def _args(
    type_token: str, props: dict[str, object], stack: str, protect: bool = False
) -> ResourceValidationArgs:
    opts = PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )
    urn = f"urn:pulumi:{stack}::fraud-mlops::{type_token}::res"
    return ResourceValidationArgs(type_token, props, urn, "res", opts, None)


@pytest.mark.parametrize("role", sorted(rules.BASIC_ROLES))
def test_no_basic_roles_flags_each_basic_role(role: str) -> None:
    found = rules.no_basic_roles(
        _r("gcp:projects/iAMMember:IAMMember", member="user:a@example.com", role=role)
    )

    assert found and role in found[0]


def test_no_basic_roles_flags_basic_role_inside_policy_document() -> None:
    doc = '{"bindings": [{"role": "roles/editor", "members": ["user:a@example.com"]}]}'

    assert rules.no_basic_roles(_r("gcp:projects/iAMPolicy:IAMPolicy", policyData=doc))


def test_no_basic_roles_predefined_role_passes() -> None:
    assert not rules.no_basic_roles(
        _r(
            "gcp:bigquery/datasetIamMember:DatasetIamMember",
            member="user:a@x.com",
            role="roles/bigquery.dataViewer",
        )
    )


@pytest.mark.parametrize("member", sorted(rules.PUBLIC_MEMBERS))
def test_no_public_principals_flags_public_member(member: str) -> None:
    res = _r(
        "gcp:storage/bucketIAMMember:BucketIAMMember",
        member=member,
        role="roles/storage.objectViewer",
    )

    assert rules.no_public_principals(res)


def test_no_public_principals_public_function_allowed_only_when_asked_outside_prod() -> None:
    public = {"member": "allUsers", "role": "roles/run.invoker"}
    dev = _r(rules.CLOUD_RUN_INVOKER, **public)
    prod = _r(rules.CLOUD_RUN_INVOKER, stack="prod", **public)

    assert rules.no_public_principals(dev)
    assert not rules.no_public_principals(dev, allow_public_function=True)
    assert rules.no_public_principals(prod, allow_public_function=True)


def test_no_public_principals_flags_public_bucket_acl() -> None:
    acl = _r("gcp:storage/bucketACL:BucketACL", roleEntities=["READER:allUsers"])

    assert rules.no_public_principals(acl)


def test_no_public_buckets_requires_prevention_and_uniform_access() -> None:
    assert not rules.no_public_buckets(_r(BUCKET, **SECURE_BUCKET))
    assert len(rules.no_public_buckets(_r(BUCKET, uniformBucketLevelAccess=False))) == 2


def test_deletion_protection_in_prod_requires_protect_and_no_force_destroy() -> None:
    ok = _r(BUCKET, stack="prod", protect=True, forceDestroy=False)
    loose = _r(BUCKET, stack="prod", protect=False, forceDestroy=True)
    dev = _r(BUCKET, stack="dev", protect=False, forceDestroy=True)

    assert not rules.deletion_protection_in_prod(ok)
    assert len(rules.deletion_protection_in_prod(loose)) == 2
    assert not rules.deletion_protection_in_prod(dev)


def test_deletion_protection_in_prod_checks_table_and_secret_flags() -> None:
    table = _r("gcp:bigquery/table:Table", stack="prod", protect=True, deletionProtection=False)
    secret = _r("gcp:secretmanager/secret:Secret", stack="prod", protect=True)

    assert rules.deletion_protection_in_prod(table)
    assert rules.deletion_protection_in_prod(secret)


NEWLY_STATEFUL = (
    "gcp:vertex/aiEndpoint:AiEndpoint",
    "gcp:pubsub/topic:Topic",
    "gcp:pubsub/subscription:Subscription",
    "gcp:vertex/aiFeatureOnlineStoreFeatureview:AiFeatureOnlineStoreFeatureview",
    "gcp:artifactregistry/repository:Repository",
)


@pytest.mark.parametrize("type_token", NEWLY_STATEFUL)
def test_deletion_protection_in_prod_unprotected_serving_resource_is_flagged(
    type_token: str,
) -> None:
    (message,) = rules.deletion_protection_in_prod(_r(type_token, stack="prod"))

    assert message == "res: must be created with protect=True in prod"
    assert rules.deletion_protection_in_prod(_r(type_token, stack="prod", protect=True)) == []
    assert rules.deletion_protection_in_prod(_r(type_token, stack="dev")) == []


def _secret(*keys: str) -> dict[str, object]:
    return {
        "userManaged": {
            "replicas": [
                {"location": "us-central1", "customerManagedEncryption": {"kmsKeyName": k}}
                for k in keys
            ]
        }
    }


def test_cmek_where_configured_function_and_secret_with_the_key_pass() -> None:
    resources = [
        _r(BUCKET, encryption={"defaultKmsKeyName": KEY}),
        _r("gcp:cloudfunctionsv2/function:Function", kmsKeyName=KEY),
        _r("gcp:secretmanager/secret:Secret", replication=_secret(KEY)),
    ]

    assert rules.cmek_where_configured(resources) == []


def test_cmek_where_configured_function_and_auto_secret_without_key_flagged() -> None:
    resources = [
        _r(BUCKET, encryption={"defaultKmsKeyName": KEY}),
        _r("gcp:cloudfunctionsv2/function:Function"),
        _r("gcp:secretmanager/secret:Secret", replication={"auto": {}}),
    ]

    assert rules.cmek_where_configured(resources) == [
        f"res: Function is not encrypted with {KEY}",
        f"res: Secret is not encrypted with {KEY}",
    ]


def test_cmek_where_configured_secret_replica_without_key_flagged() -> None:
    partly = _r("gcp:secretmanager/secret:Secret", replication=_secret(KEY, ""))

    assert rules.cmek_where_configured([partly], required_key=KEY) == [
        f"res: Secret is not encrypted with {KEY}"
    ]


def test_cmek_where_configured_one_key_everywhere_passes() -> None:
    resources = [
        _r(BUCKET, encryption={"defaultKmsKeyName": KEY}),
        _r("gcp:pubsub/topic:Topic", kmsKeyName=KEY),
        _r(
            "gcp:composer/environment:Environment", config={"encryptionConfig": {"kmsKeyName": KEY}}
        ),
    ]

    assert rules.cmek_where_configured(resources) == []


def test_cmek_where_configured_flags_resource_without_the_key() -> None:
    resources = [
        _r(BUCKET, encryption={"defaultKmsKeyName": KEY}),
        _r("gcp:vertex/aiEndpoint:AiEndpoint"),
    ]

    (message,) = rules.cmek_where_configured(resources)
    assert "AiEndpoint" in message


def test_cmek_where_configured_required_key_flags_google_managed() -> None:
    assert rules.cmek_where_configured([_r(BUCKET)], required_key=KEY)
    assert rules.cmek_where_configured([_r(BUCKET)]) == []


def test_cmek_where_configured_two_keys_flagged() -> None:
    resources = [
        _r(BUCKET, encryption={"defaultKmsKeyName": KEY}),
        _r("gcp:pubsub/topic:Topic", kmsKeyName=KEY + "2"),
    ]

    assert any("more than one" in m for m in rules.cmek_where_configured(resources))


def test_pack_adapter_reads_stack_and_protect_from_engine_args() -> None:
    res = pack.as_resource(_args(BUCKET, {"forceDestroy": True}, "prod", protect=True))

    assert (res.stack, res.protect, res.type) == ("prod", True, BUCKET)


def test_pack_declares_the_five_guardrails() -> None:
    assert {p.name for p in pack.policies()} == {
        "no-basic-roles",
        "no-public-principals",
        "no-public-buckets",
        "deletion-protection-in-prod",
        "cmek-where-configured",
    }


def _violations(run: MockRun, stack: str) -> list[str]:
    resources = [
        rules.Resource(type=r.type, props=r.inputs, stack=stack, name=r.name, protect=r.protect)
        for r in run.registrations
        if r.custom
    ]
    found = rules.cmek_where_configured(resources)
    for res in resources:
        found += rules.no_basic_roles(res) + rules.no_public_principals(res)
        found += rules.no_public_buckets(res) + rules.deletion_protection_in_prod(res)
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rules_pass_on_the_real_program(stack: str, request: pytest.FixtureRequest) -> None:
    run: MockRun = request.getfixturevalue(f"{stack}_run")

    assert _violations(run, stack) == []


def test_rules_catch_dev_program_if_it_were_prod(request: pytest.FixtureRequest) -> None:
    run: MockRun = request.getfixturevalue("dev_run")

    assert any("protect=True" in v for v in _violations(run, "prod"))
