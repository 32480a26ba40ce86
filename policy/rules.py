"""Guardrails checked on every ``pulumi preview`` and ``pulumi up``.

Each rule is a plain function of (resource type, properties, stack, protect)
returning violation messages, so tests call it directly; ``policy/__main__.py``
adapts them to pulumi-policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
PROD_STACKS = frozenset({"prod"})

BUCKET = "gcp:storage/bucket:Bucket"
CLOUD_RUN_INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
_BUCKET_ACLS = frozenset(
    {
        "gcp:storage/bucketACL:BucketACL",
        "gcp:storage/bucketAccessControl:BucketAccessControl",
        "gcp:storage/defaultObjectACL:DefaultObjectACL",
        "gcp:storage/defaultObjectAccessControl:DefaultObjectAccessControl",
        "gcp:storage/objectAccessControl:ObjectAccessControl",
    }
)


@dataclass(frozen=True)
class Resource:
    type: str
    props: Mapping[str, Any]
    stack: str
    name: str = ""
    protect: bool = False


def stack_of(urn: str) -> str:
    # urn:pulumi:STACK::PROJECT::TYPE::NAME
    return (
        urn.removeprefix("urn:pulumi:").split("::", 1)[0] if urn.startswith("urn:pulumi:") else ""
    )


def _is_iam(type_token: str) -> bool:
    kind = type_token.rsplit(":", 1)[-1].lower()
    return kind.endswith(("iammember", "iambinding", "iampolicy"))


def _grants(r: Resource) -> Iterable[tuple[str, str]]:
    """(member, role) pairs of an IAM member, binding or policy resource."""
    props = r.props
    role = props.get("role")
    if isinstance(props.get("member"), str) and isinstance(role, str):
        yield props["member"], role
    for member in props.get("members") or []:
        if isinstance(member, str) and isinstance(role, str):
            yield member, role
    policy = props.get("policyData")
    if isinstance(policy, str):
        try:
            doc = json.loads(policy)
        except ValueError:
            return
        for b in doc.get("bindings", []):
            for member in b.get("members", []):
                yield member, b.get("role", "")


def no_basic_roles(r: Resource) -> list[str]:
    if not _is_iam(r.type):
        return []
    return [
        f"{r.name}: {role} is a basic role; grant a predefined role on the narrowest resource"
        for _, role in _grants(r)
        if role in BASIC_ROLES
    ]


def no_public_principals(r: Resource, *, allow_public_function: bool = False) -> list[str]:
    found: list[str] = []
    if _is_iam(r.type):
        for member, role in _grants(r):
            if member not in PUBLIC_MEMBERS:
                continue
            asked = r.type == CLOUD_RUN_INVOKER and role == "roles/run.invoker"
            if asked and allow_public_function and r.stack not in PROD_STACKS:
                continue
            found.append(f"{r.name}: {member} granted {role}")
    if r.type in _BUCKET_ACLS:
        text = json.dumps(dict(r.props))
        found += [f"{r.name}: ACL names {m}" for m in sorted(PUBLIC_MEMBERS) if m in text]
    return found


def no_public_buckets(r: Resource) -> list[str]:
    if r.type != BUCKET:
        return []
    out = []
    if r.props.get("publicAccessPrevention") != "enforced":
        out.append(f"{r.name}: publicAccessPrevention must be 'enforced'")
    if r.props.get("uniformBucketLevelAccess") is not True:
        out.append(f"{r.name}: uniformBucketLevelAccess must be true (no object ACLs)")
    return out


# type -> the property that, when true, lets the resource be deleted with its data
_STATEFUL: Mapping[str, str | None] = {
    "gcp:bigquery/dataset:Dataset": "deleteContentsOnDestroy",
    "gcp:bigquery/table:Table": None,
    BUCKET: "forceDestroy",
    "gcp:secretmanager/secret:Secret": None,
    "gcp:vertex/aiFeatureOnlineStore:AiFeatureOnlineStore": "forceDestroy",
    "gcp:composer/environment:Environment": None,
    # Deleting these loses live models, pending notifications, synced features or images.
    "gcp:vertex/aiEndpoint:AiEndpoint": None,
    "gcp:pubsub/topic:Topic": None,
    "gcp:pubsub/subscription:Subscription": None,
    "gcp:vertex/aiFeatureOnlineStoreFeatureview:AiFeatureOnlineStoreFeatureview": None,
    "gcp:artifactregistry/repository:Repository": None,
}


def deletion_protection_in_prod(r: Resource) -> list[str]:
    if r.stack not in PROD_STACKS or r.type not in _STATEFUL:
        return []
    out = []
    if not r.protect:
        out.append(f"{r.name}: must be created with protect=True in {r.stack}")
    flag = _STATEFUL[r.type]
    if flag and r.props.get(flag) is True:
        out.append(f"{r.name}: {flag} must not be true in {r.stack}")
    if r.type == "gcp:bigquery/table:Table" and r.props.get("deletionProtection") is False:
        out.append(f"{r.name}: deletionProtection must be true in {r.stack}")
    if (
        r.type == "gcp:secretmanager/secret:Secret"
        and r.props.get("deletionProtection") is not True
    ):
        out.append(f"{r.name}: deletionProtection must be true in {r.stack}")
    return out


def _path(props: Mapping[str, Any], *keys: str) -> Any:
    """The value at ``keys``; ``*`` steps into every element of a list, which
    must all hold the same value (else None: no single key covers them)."""
    value: Any = props
    for i, key in enumerate(keys):
        if key == "*":
            if not isinstance(value, list) or not value:
                return None
            found = {repr(v): v for v in (_path(e, *keys[i + 1 :]) for e in value)}
            return next(iter(found.values())) if len(found) == 1 else None
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# Where each CMEK-capable resource keeps its key.
CMEK_PATHS: Mapping[str, tuple[str, ...]] = {
    "gcp:bigquery/dataset:Dataset": ("defaultEncryptionConfiguration", "kmsKeyName"),
    BUCKET: ("encryption", "defaultKmsKeyName"),
    "gcp:pubsub/topic:Topic": ("kmsKeyName",),
    "gcp:composer/environment:Environment": ("config", "encryptionConfig", "kmsKeyName"),
    "gcp:vertex/aiEndpoint:AiEndpoint": ("encryptionSpec", "kmsKeyName"),
    "gcp:vertex/aiFeatureOnlineStore:AiFeatureOnlineStore": ("encryptionSpec", "kmsKeyName"),
    "gcp:artifactregistry/repository:Repository": ("kmsKeyName",),
    "gcp:cloudfunctionsv2/function:Function": ("kmsKeyName",),
    "gcp:secretmanager/secret:Secret": (
        "replication",
        "userManaged",
        "replicas",
        "*",
        "customerManagedEncryption",
        "kmsKeyName",
    ),
}


def kms_key_of(r: Resource) -> str | None:
    path = CMEK_PATHS.get(r.type)
    key = _path(r.props, *path) if path else None
    return key if isinstance(key, str) and key else None


def cmek_where_configured(resources: Iterable[Resource], required_key: str = "") -> list[str]:
    """Once any resource uses a customer-managed key (or the pack is configured
    with one), every CMEK-capable resource must use that one key."""
    capable = [r for r in resources if r.type in CMEK_PATHS]
    keys = {k for r in capable if (k := kms_key_of(r))}
    if required_key:
        keys.add(required_key)
    if not keys:
        return []
    if len(keys) > 1:
        return [f"more than one KMS key in use: {sorted(keys)}; the stack uses one key"]
    (key,) = keys
    return [
        f"{r.name}: {r.type.rsplit(':', 1)[-1]} is not encrypted with {key}"
        for r in capable
        if kms_key_of(r) != key
    ]
