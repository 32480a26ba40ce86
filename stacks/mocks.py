"""Run a Pulumi program in-process against Pulumi's mock engine.

:class:`FakeGcp` answers like GCP would for the outputs this program reads
(service-account e-mails, the Composer bucket, the function's service);
:class:`RecordingMonitor` keeps every registration with its parent and options,
and every invoke (a data-source lookup) with the resources it waited for, which
is what the plan command and the tests inspect. No CLI, no credentials.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.proto import resource_pb2

PROJECT_NUMBER = "123456789012"

_AGENT_DOMAINS = {
    "aiplatform.googleapis.com": "gcp-sa-aiplatform.iam.gserviceaccount.com",
    "composer.googleapis.com": "cloudcomposer-accounts.iam.gserviceaccount.com",
    "pubsub.googleapis.com": "gcp-sa-pubsub.iam.gserviceaccount.com",
    "artifactregistry.googleapis.com": "gcp-sa-artifactregistry.iam.gserviceaccount.com",
    "secretmanager.googleapis.com": "gcp-sa-secretmanager.iam.gserviceaccount.com",
}


_SIG_KEY = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker for special values
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secrets(value: Any, path: str = "", found: list[str] | None = None) -> Any:
    """The value with Pulumi's secret envelopes removed; ``found`` collects their paths."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            if found is not None:
                found.append(path)
            return unwrap_secrets(value.get("value"), path, found)
        return {k: unwrap_secrets(v, f"{path}.{k}".lstrip("."), found) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v, path, found) for v in value]
    return value


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent_urn: str
    custom: bool
    protect: bool
    inputs: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    # Inputs the provider marks secret (shown masked in plans).
    secret_inputs: tuple[str, ...] = ()

    @property
    def parent_name(self) -> str:
        return self.parent_urn.rsplit("::", 1)[-1] if self.parent_urn else ""

    @property
    def parent_type(self) -> str:
        if not self.parent_urn:
            return ""
        return self.parent_urn.split("::")[2].split("$")[-1]


@dataclass(frozen=True)
class Invocation:
    """One invoke as the program issued it: the function, its arguments, and the
    URNs it was declared to wait for (``InvokeOutputOptions.depends_on``, with
    components expanded to their resources)."""

    token: str
    args: dict[str, Any]
    depends_on: tuple[str, ...] = ()


class FakeGcp(pulumi.runtime.Mocks):
    """Outputs shaped like GCP's, computed from the inputs (keys are wire names)."""

    def __init__(self, project_number: str = PROJECT_NUMBER) -> None:
        self.number = project_number

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        i = dict(args.inputs)
        t = args.typ
        project = i.get("project", "mock-project")
        out: dict[str, Any] = {}
        rid = f"{args.name}-id"
        if t == "gcp:serviceaccount/account:Account":
            email = f"{i['accountId']}@{project}.iam.gserviceaccount.com"
            rid = f"projects/{project}/serviceAccounts/{email}"
            out = {"email": email, "name": rid, "member": f"serviceAccount:{email}"}
        elif t == "gcp:storage/bucket:Bucket":
            rid = i["name"]
            out = {"url": f"gs://{i['name']}", "selfLink": f"https://storage/{i['name']}"}
        elif t == "docker-build:index:Image":
            # A pushed image: its digest as the registry would report it (stable per tag).
            digest = "sha256:" + hashlib.sha256(i["tags"][0].encode()).hexdigest()
            out = {"digest": digest, "ref": f"{i['tags'][0]}@{digest}"}
        elif t == "gcp:storage/bucketObject:BucketObject":
            rid = f"{i.get('bucket')}-{i.get('name')}"
            out = {"mediaLink": f"https://storage/{i.get('bucket')}/{i.get('name')}"}
        elif t == "gcp:bigquery/dataset:Dataset":
            rid = f"projects/{project}/datasets/{i['datasetId']}"
        elif t == "gcp:bigquery/table:Table":
            rid = f"projects/{project}/datasets/{i['datasetId']}/tables/{i['tableId']}"
        elif t == "gcp:pubsub/topic:Topic":
            rid = f"projects/{project}/topics/{i['name']}"
        elif t == "gcp:pubsub/subscription:Subscription":
            rid = f"projects/{project}/subscriptions/{i['name']}"
        elif t == "gcp:secretmanager/secret:Secret":
            rid = f"projects/{project}/secrets/{i['secretId']}"
            out = {"name": f"projects/{self.number}/secrets/{i['secretId']}"}
        elif t == "gcp:artifactregistry/repository:Repository":
            rid = f"projects/{project}/locations/{i['location']}/repositories/{i['repositoryId']}"
            out = {"name": i["repositoryId"]}
        elif t == "gcp:composer/environment:Environment":
            rid = f"projects/{project}/locations/{i['region']}/environments/{i['name']}"
            bucket = (
                f"{i['region']}-{i['name']}-{hashlib.sha1(rid.encode()).hexdigest()[:8]}-bucket"
            )
            config = dict(i.get("config") or {})
            config.update(
                dagGcsPrefix=f"gs://{bucket}/dags",
                airflowUri=f"https://{i['name']}.composer.googleusercontent.com",
            )
            out = {"config": config}
        elif t == "gcp:cloudfunctionsv2/function:Function":
            rid = f"projects/{project}/locations/{i['location']}/functions/{i['name']}"
            service = dict(i.get("serviceConfig") or {})
            service.update(service=i["name"], uri=f"https://{i['name']}-{self.number}.run.app")
            out = {"serviceConfig": service, "url": service["uri"]}
        elif t == "gcp:projects/serviceIdentity:ServiceIdentity":
            email = f"service-{self.number}@{_AGENT_DOMAINS[i['service']]}"
            out = {"email": email, "member": f"serviceAccount:{email}"}
        elif t == "gcp:projects/iAMCustomRole:IAMCustomRole":
            rid = f"projects/{project}/roles/{i['roleId']}"
            out = {"name": rid}
        elif t == "gcp:vertex/aiEndpoint:AiEndpoint":
            rid = f"projects/{project}/locations/{i['location']}/endpoints/{i['name']}"
        return rid, {**i, **out}

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        a = dict(args.args)
        project = a.get("project") or a.get("projectId") or "mock-project"
        if args.token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            email = f"service-{self.number}@gs-project-accounts.iam.gserviceaccount.com"
            return {"emailAddress": email, "member": f"serviceAccount:{email}", "id": email}, []
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            return {"accessToken": "mock-token", "project": project, "id": "client-config"}, []
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": self.number, "projectId": project, "id": f"projects/{project}"}, []
        if args.token == "gcp:bigquery/getDefaultServiceAccount:getDefaultServiceAccount":
            email = f"bq-{self.number}@bigquery-encryption.iam.gserviceaccount.com"
            return {"email": email, "member": f"serviceAccount:{email}", "id": email}, []
        # An invoke the program newly calls must get a deliberate fake answer here,
        # not a silent default that would make the offline plan lie.
        raise LookupError(f"FakeGcp has no answer for invoke {args.token}; add one in mocks.py")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping each registration's parent, protect and inputs,
    and each invoke's token, arguments and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.invocations: list[Invocation] = []

    def GetDeploymentInfo(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        # Pulumi's mock monitor leaves out invoke dependencies, so the SDK would wait
        # for them without saying so. Announcing the feature, as the engine does, makes
        # the SDK put them on each invoke request, where the tests can see them.
        info = super().GetDeploymentInfo(request)
        features = [
            *info.supportedFeatures,
            resource_pb2.RESOURCE_MONITOR_FEATURE_INVOKE_DEPENDS_ON,
        ]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if request.tok != "pulumi:pulumi:getResource":
            from pulumi.runtime import rpc

            self.invocations.append(
                Invocation(
                    token=request.tok,
                    args=unwrap_secrets(dict(rpc.deserialize_properties(request.args))),
                    depends_on=tuple(request.dependsOn),
                )
            )
        return super().Invoke(request)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            secrets: list[str] = []
            inputs = unwrap_secrets(dict(rpc.deserialize_properties(request.object)), "", secrets)
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent_urn=request.parent,
                    custom=bool(request.custom),
                    protect=bool(request.protect),
                    inputs=inputs,
                    depends_on=tuple(request.dependencies),
                    secret_inputs=tuple(secrets),
                )
            )
        return response


@dataclass
class MockRun:
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def children_of(self, name: str) -> list[Registration]:
        return [r for r in self.registrations if r.parent_name == name]

    def by_name(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


def run_with_mocks(
    program: Callable[[], Mapping[str, Any] | None],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str] | None = None,
    mocks: pulumi.runtime.Mocks | None = None,
) -> MockRun:
    """Run ``program`` under fresh mocks and return what it registered.

    Each call resets the engine's process-wide settings (root stack, config), so
    runs for different stacks in one process do not see each other.
    """
    pulumi.runtime.set_all_config(dict(config or {}))
    pulumi_settings.ROOT.set(None)
    monitor = RecordingMonitor(mocks or FakeGcp())
    pulumi.runtime.set_mocks(
        monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor
    )
    resolved: dict[str, Any] = {}

    def body() -> pulumi.Output[Any]:
        exports = program() or {}
        outs = {k: pulumi.Output.from_input(v) for k, v in exports.items()}
        return (
            pulumi.Output.all(**outs).apply(resolved.update)
            if outs
            else pulumi.Output.from_input(None)
        )

    pulumi.runtime.test(body)()
    return MockRun(
        registrations=monitor.registrations, outputs=resolved, invocations=monitor.invocations
    )
