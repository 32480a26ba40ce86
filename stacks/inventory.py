"""What a mocked run created, in the shapes a reviewer reads: resources grouped
by component, and IAM bindings as (member, role, full resource name)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pulumi

from stacks.iam_matrix import Binding
from stacks.mocks import Registration

STACK_TYPE = "pulumi:pulumi:Stack"

# Inputs that are long or binary: shown as a summary, not verbatim.
_BULKY = {"schema", "content", "source"}
_FEATURE_VIEW_IAM = (
    "gcp:vertex/aiFeatureOnlineStoreFeatureviewIamMember:AiFeatureOnlineStoreFeatureviewIamMember"
)


def _secret_path(value: str, project: str) -> str:
    return value if value.startswith("projects/") else f"projects/{project}/secrets/{value}"


def _resource_of(r: Registration) -> str | None:
    i = r.inputs
    p = i.get("project", "")
    t = r.type
    if t == "gcp:projects/iAMMember:IAMMember":
        return f"//cloudresourcemanager.googleapis.com/projects/{p}"
    if t == "gcp:bigquery/datasetIamMember:DatasetIamMember":
        return f"//bigquery.googleapis.com/projects/{p}/datasets/{i['datasetId']}"
    if t == "gcp:bigquery/iamMember:IamMember":
        return (
            f"//bigquery.googleapis.com/projects/{p}/datasets/{i['datasetId']}"
            f"/tables/{i['tableId']}"
        )
    if t == "gcp:storage/bucketIAMMember:BucketIAMMember":
        return f"//storage.googleapis.com/projects/_/buckets/{i['bucket']}"
    if t == "gcp:pubsub/topicIAMMember:TopicIAMMember":
        return f"//pubsub.googleapis.com/projects/{p}/topics/{i['topic'].rsplit('/', 1)[-1]}"
    if t == "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember":
        sub = i["subscription"].rsplit("/", 1)[-1]
        return f"//pubsub.googleapis.com/projects/{p}/subscriptions/{sub}"
    if t == "gcp:secretmanager/secretIamMember:SecretIamMember":
        return f"//secretmanager.googleapis.com/{_secret_path(i['secretId'], p)}"
    if t == _FEATURE_VIEW_IAM:
        return (
            f"//aiplatform.googleapis.com/projects/{p}/locations/{i['region']}"
            f"/featureOnlineStores/{i['featureOnlineStore']}/featureViews/{i['featureView']}"
        )
    if t == "gcp:vertex/aiEndpointIamMember:AiEndpointIamMember":
        endpoint = i["endpoint"].rsplit("/", 1)[-1]
        return (
            f"//aiplatform.googleapis.com/projects/{p}/locations/{i['location']}"
            f"/endpoints/{endpoint}"
        )
    if t == "gcp:cloudrunv2/serviceIamMember:ServiceIamMember":
        service = i["name"].rsplit("/", 1)[-1]
        return f"//run.googleapis.com/projects/{p}/locations/{i['location']}/services/{service}"
    if t == "gcp:serviceaccount/iAMMember:IAMMember":
        return f"//iam.googleapis.com/{i['serviceAccountId']}"
    if t == "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember":
        return f"//cloudkms.googleapis.com/{i['cryptoKeyId']}"
    if t == "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember":
        return (
            f"//artifactregistry.googleapis.com/projects/{p}/locations/{i['location']}"
            f"/repositories/{i['repository'].rsplit('/', 1)[-1]}"
        )
    return None


def is_iam(type_token: str) -> bool:
    kind = type_token.rsplit(":", 1)[-1].lower()
    return any(kind.endswith(s) for s in ("iammember", "iambinding", "iampolicy"))


def bindings(registrations: list[Registration]) -> list[tuple[Binding, Registration]]:
    """Every IAM grant the run made. An IAM type this module cannot read is an
    error, so a new kind of grant can never slip past the matrix unseen."""
    out = []
    for r in registrations:
        if not r.custom or not is_iam(r.type):
            continue
        if not r.type.lower().endswith("member"):
            raise ValueError(
                f"{r.name}: {r.type} is authoritative (replaces grants made elsewhere); "
                "use the *IamMember form"
            )
        resource = _resource_of(r)
        if resource is None:
            raise ValueError(f"{r.name}: no IAM matrix mapping for {r.type}")
        condition = (r.inputs.get("condition") or {}).get("expression", "")
        out.append((Binding(r.inputs["member"], r.inputs["role"], resource, condition), r))
    return out


CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"


def custom_roles(registrations: list[Registration]) -> dict[str, frozenset[str]]:
    """Every project custom role the run created (full role name) with its permissions."""
    out: dict[str, frozenset[str]] = {}
    for r in registrations:
        if r.custom and r.type == CUSTOM_ROLE:
            name = f"projects/{r.inputs['project']}/roles/{r.inputs['roleId']}"
            if name in out:
                raise ValueError(f"{r.name}: custom role {name} is created twice")
            out[name] = frozenset(r.inputs.get("permissions") or ())
    return out


def top_component(r: Registration, by_urn: dict[str, Registration]) -> str:
    """The name of the outermost component that holds ``r`` (itself if top level)."""
    current = r
    while current.parent_urn and current.parent_urn in by_urn:
        current = by_urn[current.parent_urn]
    return current.name


def components(registrations: list[Registration]) -> dict[str, dict[str, Any]]:
    by_urn = {r.urn: r for r in registrations}
    out: dict[str, dict[str, Any]] = {}
    for r in registrations:
        if r.parent_type == STACK_TYPE and not r.custom:
            out[r.name] = {"type": r.type, "resources": 0, "by_type": Counter()}
    for r in registrations:
        if not r.custom:
            continue
        top = top_component(r, by_urn)
        entry = out.setdefault(top, {"type": "(stack)", "resources": 0, "by_type": Counter()})
        entry["resources"] += 1
        entry["by_type"][r.type] += 1
    for entry in out.values():
        entry["by_type"] = dict(sorted(entry["by_type"].items()))
    # Registration order depends on scheduling; a reviewer diffs plans by name.
    return dict(sorted(out.items()))


def _plain(value: Any) -> Any:
    if isinstance(value, pulumi.FileAsset):
        return {"fileAsset": value.path}
    if isinstance(value, pulumi.StringAsset):
        return {"stringAsset": f"{len(value.text)} characters"}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def key_inputs(r: Registration) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in sorted(r.inputs.items()):
        if k == "__defaults":
            continue
        if any(path == k or path.startswith(f"{k}.") for path in r.secret_inputs):
            out[k] = "[secret]"
            continue
        if k in _BULKY and isinstance(v, str):
            if k == "schema":
                try:
                    out[k] = [c["name"] for c in json.loads(v)]
                except (ValueError, KeyError, TypeError):
                    out[k] = f"{len(v)} characters"
            else:
                out[k] = f"{len(v)} characters"
            continue
        out[k] = _plain(v)
    return out
