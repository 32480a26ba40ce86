"""The Google APIs the stack needs, enabled by the stack itself."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.base import Component

# One line per API, and what it is for.
REQUIRED_APIS: tuple[str, ...] = (
    "aiplatform.googleapis.com",  # pipelines, model registry, endpoint, feature store
    "artifactregistry.googleapis.com",  # function images
    "bigquery.googleapis.com",  # warehouse
    "cloudbuild.googleapis.com",  # builds the function
    "cloudfunctions.googleapis.com",  # prediction function
    "cloudkms.googleapis.com",  # CMEK (harmless when unused)
    "cloudresourcemanager.googleapis.com",  # project IAM grants, audit config, project lookup
    "composer.googleapis.com",  # orchestration
    "iam.googleapis.com",  # service accounts, custom role
    "iamcredentials.googleapis.com",  # orchestration mints the sync account's tokens
    "logging.googleapis.com",  # audit and build logs
    "pubsub.googleapis.com",  # landing notifications
    "run.googleapis.com",  # gen-2 functions run on Cloud Run
    "secretmanager.googleapis.com",  # card-number HMAC key
    "storage.googleapis.com",  # landing, pipeline root, function source
)

# Only with a VPC Service Controls perimeter (vpcServiceControls.accessPolicy).
PERIMETER_APIS: tuple[str, ...] = ("accesscontextmanager.googleapis.com",)


@dataclass(frozen=True)
class ProjectServicesArgs:
    project: str
    apis: tuple[str, ...] = REQUIRED_APIS

    def validate(self) -> None:
        if not self.apis:
            raise ValueError("ProjectServicesArgs.apis: at least one API is required")
        bad = [a for a in self.apis if not a.endswith(".googleapis.com")]
        if bad:
            raise ValueError(f"ProjectServicesArgs.apis: not API names: {bad}")


class ProjectServices(Component):
    def __init__(
        self, name: str, args: ProjectServicesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("ProjectServices", name, opts)
        self.services = [
            gcp.projects.Service(
                self.n(api.split(".", 1)[0]),
                project=args.project,
                service=api,
                # Turning an API off on destroy would break anything else in the project.
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=self.child(),
            )
            for api in args.apis
        ]
        self.register_outputs({"apis": list(args.apis)})
