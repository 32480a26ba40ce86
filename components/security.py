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

# The services the stack keeps data in or calls from inside the project, restricted
# to the perimeter. A DAG task in a Composer 3 perimeter reaches only restricted
# services, so every API the DAG calls is here. Left out on purpose: Cloud Build (the
# function builds on Cloud Build's default pool, and VPC-SC covers private pools only)
# and Cloud Logging (those builds write their logs from outside the perimeter).
PERIMETER_SERVICES: tuple[str, ...] = (
    "aiplatform.googleapis.com",  # pipelines, registry, endpoint, feature store
    "artifactregistry.googleapis.com",  # the function's images
    "bigquery.googleapis.com",  # warehouse, lineage, request log
    "cloudfunctions.googleapis.com",  # the prediction function
    "composer.googleapis.com",  # orchestration
    "iamcredentials.googleapis.com",  # the DAG mints the sync account's tokens
    "pubsub.googleapis.com",  # landing notifications
    "run.googleapis.com",  # the function's service
    "secretmanager.googleapis.com",  # card-number key
    "storage.googleapis.com",  # landing, pipeline root, function source, Composer bucket
)
# With a stack key, Composer's CMEK setup needs Cloud KMS and Artifact Registry
# inside the perimeter too (the key's project must then be in it, or reachable by
# an egress rule).
CMEK_PERIMETER_SERVICES: tuple[str, ...] = (
    "artifactregistry.googleapis.com",
    "cloudkms.googleapis.com",
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
        lookup = self.lookup()
        number = gcp.organizations.get_project_output(project_id=args.project, opts=lookup).number
        members: dict[str, pulumi.Input[str]] = {
            "bigquery": gcp.bigquery.get_default_service_account_output(
                project=args.project, opts=lookup
            ).member,
            "storage": gcp.storage.get_project_service_account_output(
                project=args.project, opts=lookup
            ).member,
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
    # The stack's CMEK key, if any: it adds CMEK_PERIMETER_SERVICES.
    kms_key_name: str | None = None

    def validate(self) -> None:
        if not self.access_policy.isdigit():
            raise ValueError("PerimeterArgs.access_policy: the numeric access policy id")
        if not self.perimeter_name.replace("_", "").isalnum():
            raise ValueError("PerimeterArgs.perimeter_name: letters, digits and underscores")
        if isinstance(self.services, str) or not self.services:
            raise ValueError("PerimeterArgs.services: a non-empty tuple of API names")
        bad = [s for s in self.services if not s.endswith(".googleapis.com")]
        if bad:
            raise ValueError(f"PerimeterArgs.services: {bad} are not API names")
        if self.kms_key_name is not None and "/cryptoKeys/" not in self.kms_key_name:
            raise ValueError(f"PerimeterArgs.kms_key_name: {self.kms_key_name!r} is not a key")

    @property
    def restricted_services(self) -> list[str]:
        """``services``, and with a key what CMEK needs inside the perimeter; sorted,
        so the same set is never a change."""
        extra = CMEK_PERIMETER_SERVICES if self.kms_key_name else ()
        return sorted({*self.services, *extra})


class Perimeter(Component):
    """A regular VPC-SC perimeter around the project, enforced or dry run."""

    def __init__(
        self, name: str, args: PerimeterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Perimeter", name, opts)
        number = gcp.organizations.get_project_output(
            project_id=args.project, opts=self.lookup()
        ).number
        body = gcp.accesscontextmanager.ServicePerimeterStatusArgs(
            resources=[number.apply(lambda n: f"projects/{n}")],
            restricted_services=args.restricted_services,
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
