"""Composer 3 running as the orchestration account, with the DAGs, the ``app``
package they import, and the runtime config delivered to its bucket."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from components.base import Component

# Composer mounts its bucket at this path in every Airflow component.
GCS_MOUNT = "/home/airflow/gcs"
CONFIG_OBJECT = "data/fraud-mlops/runtime-config.json"
CONFIG_ENV = "FRAUD_MLOPS_CONFIG"
_SKIP_DIRS = {"__pycache__", ".pytest_cache"}
_SIZES = {"ENVIRONMENT_SIZE_SMALL", "ENVIRONMENT_SIZE_MEDIUM", "ENVIRONMENT_SIZE_LARGE"}


@dataclass(frozen=True)
class OrchestrationArgs:
    project: str
    region: str
    environment_name: str
    image_version: str
    environment_size: str
    service_account_email: pulumi.Input[str]
    runtime_config_json: pulumi.Input[str]
    source_root: Path
    worker_min_count: int
    worker_max_count: int
    private_ip: bool
    deletion_protection: bool
    # Uploaded under dags/ keeping their paths, so `import app.core` works there.
    package_trees: Sequence[str] = ("app/__init__.py", "app/core", "app/dags")
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()

    def validate(self) -> None:
        if not re.match(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$", self.environment_name):
            raise ValueError(f"OrchestrationArgs.environment_name: {self.environment_name!r}")
        if not self.image_version.startswith("composer-3-"):
            raise ValueError(
                f"OrchestrationArgs.image_version: {self.image_version!r} is not a Composer 3 image"
            )
        if self.environment_size not in _SIZES:
            raise ValueError(f"OrchestrationArgs.environment_size: {self.environment_size!r}")
        if self.worker_max_count < self.worker_min_count:
            raise ValueError("OrchestrationArgs.worker_max_count: must be >= worker_min_count")


def package_files(root: Path, trees: Sequence[str]) -> list[tuple[str, Path]]:
    """(relative posix path, file) for every file under ``trees`` that exists."""
    found: list[tuple[str, Path]] = []
    for tree in trees:
        base = root / tree
        paths = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        for path in paths:
            rel = path.relative_to(root)
            if path.is_file() and not _SKIP_DIRS.intersection(rel.parts) and path.suffix != ".pyc":
                found.append((rel.as_posix(), path))
    return found


class Orchestration(Component):
    def __init__(
        self, name: str, args: OrchestrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Orchestration", name, opts)
        self.environment = gcp.composer.Environment(
            self.n("composer"),
            project=args.project,
            region=args.region,
            name=args.environment_name,
            labels=dict(args.labels),
            config=gcp.composer.EnvironmentConfigArgs(
                environment_size=args.environment_size,
                enable_private_environment=args.private_ip,
                software_config=gcp.composer.EnvironmentConfigSoftwareConfigArgs(
                    image_version=args.image_version,
                    # A path, not the JSON: a config change re-uploads one object
                    # instead of restarting every Airflow component.
                    env_variables={CONFIG_ENV: f"@{GCS_MOUNT}/{CONFIG_OBJECT}"},
                ),
                node_config=gcp.composer.EnvironmentConfigNodeConfigArgs(
                    service_account=args.service_account_email,
                ),
                workloads_config=gcp.composer.EnvironmentConfigWorkloadsConfigArgs(
                    worker=gcp.composer.EnvironmentConfigWorkloadsConfigWorkerArgs(
                        min_count=args.worker_min_count,
                        max_count=args.worker_max_count,
                    ),
                ),
                encryption_config=(
                    gcp.composer.EnvironmentConfigEncryptionConfigArgs(
                        kms_key_name=args.kms_key_name
                    )
                    if args.kms_key_name
                    else None
                ),
            ),
            opts=self.child(protect=args.deletion_protection, depends_on=args.kms_ready),
        )
        # gs://BUCKET/dags -> BUCKET
        self.bucket = self.environment.config.apply(
            lambda c: (c.dag_gcs_prefix or "").removeprefix("gs://").split("/", 1)[0]
        )

        self.runtime_config = gcp.storage.BucketObject(
            self.n("runtime-config"),
            bucket=self.bucket,
            name=CONFIG_OBJECT,
            content=args.runtime_config_json,
            content_type="application/json",
            opts=self.child(),
        )
        # app/core is imported by the DAGs, not a DAG folder itself: keep the
        # scheduler from parsing it.
        self.airflowignore = gcp.storage.BucketObject(
            self.n("airflowignore"),
            bucket=self.bucket,
            name="dags/.airflowignore",
            content="app/core/\n",
            content_type="text/plain",
            opts=self.child(),
        )
        self.package_objects = [
            gcp.storage.BucketObject(
                self.n(f"dags-{rel.replace('/', '-').replace('.', '-')}"),
                bucket=self.bucket,
                name=f"dags/{rel}",
                source=pulumi.FileAsset(str(path)),
                opts=self.child(),
            )
            for rel, path in package_files(args.source_root, args.package_trees)
        ]
        self.register_outputs(
            {
                "environment": self.environment.name,
                "bucket": self.bucket,
                "airflow_uri": self.environment.config.apply(lambda c: c.airflow_uri),
                "dag_files": len(self.package_objects),
            }
        )
