"""Project-wide security settings: data-access audit logs, CMEK key grants for
the Google service agents that encrypt on our behalf, and an optional VPC
Service Controls perimeter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.base import Component

AUDITED_SERVICES = ("bigquery.googleapis.com", "aiplatform.googleapis.com")

# Agents that encrypt with the stack's key (CMEK) and that the caller creates
# explicitly (components.service_agents), so each grant waits for its agent.
CMEK_CREATED_AGENTS: tuple[str, ...] = (
    "aiplatform",  # endpoint, feature store
    "artifactregistry",  # Composer, function images
    "composer",  # Composer environment
    "pubsub",  # landing topic, Composer
    "secretmanager",  # card-key secret
)
# Agents Google creates when their API is enabled (ProjectServices runs first),
# by e-mail domain: a gen-2 function with a key needs both on it. BigQuery's and
# Cloud Storage's agents are looked up instead.
CMEK_API_AGENT_DOMAINS: dict[str, str] = {
    "cloudfunctions": "gcf-admin-robot.iam.gserviceaccount.com",  # function
    "run": "serverless-robot-prod.iam.gserviceaccount.com",  # function's service
}

PERIMETER_SERVICES = (
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudfunctions.googleapis.com",
    "composer.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
)


@dataclass(frozen=True)
class AuditLogsArgs:
    project: str
    services: Sequence[str] = AUDITED_SERVICES

    def validate(self) -> None:
        if not self.services:
            raise ValueError("AuditLogsArgs.services: at least one service")


class AuditLogs(Component):
    """DATA_READ and DATA_WRITE logs: who read which card's features or rows."""

    def __init__(
        self, name: str, args: AuditLogsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("AuditLogs", name, opts)
        self.configs = [
            gcp.projects.IAMAuditConfig(
                self.n(service.split(".", 1)[0]),
                project=args.project,
                service=service,
                audit_log_configs=[
                    gcp.projects.IAMAuditConfigAuditLogConfigArgs(log_type=log_type)
                    for log_type in ("ADMIN_READ", "DATA_READ", "DATA_WRITE")
                ],
                opts=self.child(),
            )
            for service in args.services
        ]
        self.register_outputs({"services": list(args.services)})


@dataclass(frozen=True)
class KeyAccessArgs:
    project: str
    kms_key_name: str
    # serviceAccount:... of each agent in CMEK_CREATED_AGENTS (ServiceAgents.member).
    agent_members: Mapping[str, pulumi.Input[str]]

    def validate(self) -> None:
        if "/cryptoKeys/" not in self.kms_key_name:
            raise ValueError(f"KeyAccessArgs.kms_key_name: {self.kms_key_name!r} is not a key")
        missing = sorted(set(CMEK_CREATED_AGENTS) - set(self.agent_members))
        if missing:
            raise ValueError(f"KeyAccessArgs.agent_members: missing {missing}")


class KeyAccess(Component):
    """Key-level encrypter/decrypter for each service agent that uses the key."""

    def __init__(
        self, name: str, args: KeyAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("KeyAccess", name, opts)
        number = gcp.organizations.get_project_output(project_id=args.project).number
        members: dict[str, pulumi.Input[str]] = {
            "bigquery": gcp.bigquery.get_default_service_account_output(
                project=args.project
            ).member,
            "storage": gcp.storage.get_project_service_account_output(project=args.project).member,
            **{a: args.agent_members[a] for a in CMEK_CREATED_AGENTS},
        }
        for service, domain in CMEK_API_AGENT_DOMAINS.items():
            members[service] = pulumi.Output.format(
                "serviceAccount:service-{0}@{1}", number, domain
            )
        self.grants = [
            gcp.kms.CryptoKeyIAMMember(
                self.n(service),
                crypto_key_id=args.kms_key_name,
                role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                member=member,
                opts=self.child(),
            )
            for service, member in sorted(members.items())
        ]
        self.register_outputs({"agents": sorted(members)})


@dataclass(frozen=True)
class PerimeterArgs:
    project: str
    access_policy: str
    perimeter_name: str
    dry_run: bool = True
    services: Sequence[str] = PERIMETER_SERVICES

    def validate(self) -> None:
        if not self.access_policy.isdigit():
            raise ValueError("PerimeterArgs.access_policy: the numeric access policy id")
        if not self.perimeter_name.replace("_", "").isalnum():
            raise ValueError("PerimeterArgs.perimeter_name: letters, digits and underscores")


class Perimeter(Component):
    """A regular VPC-SC perimeter around the project, enforced or dry run."""

    def __init__(
        self, name: str, args: PerimeterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Perimeter", name, opts)
        number = gcp.organizations.get_project_output(project_id=args.project).number
        body = gcp.accesscontextmanager.ServicePerimeterStatusArgs(
            resources=[number.apply(lambda n: f"projects/{n}")],
            restricted_services=list(args.services),
        )
        policy = f"accessPolicies/{args.access_policy}"
        self.perimeter = gcp.accesscontextmanager.ServicePerimeter(
            self.n("perimeter"),
            parent=policy,
            name=f"{policy}/servicePerimeters/{args.perimeter_name}",
            title=args.perimeter_name,
            perimeter_type="PERIMETER_TYPE_REGULAR",
            status=None if args.dry_run else body,
            spec=(
                gcp.accesscontextmanager.ServicePerimeterSpecArgs(
                    resources=body.resources, restricted_services=body.restricted_services
                )
                if args.dry_run
                else None
            ),
            use_explicit_dry_run_spec=args.dry_run,
            opts=self.child(),
        )
        self.register_outputs({"perimeter": self.perimeter.name, "dry_run": args.dry_run})
