"""The HTTP prediction function: a gen-2 Cloud Function built from the modules
``app/function/main.py`` imports (see :mod:`components.source_closure`), running
as the inference account, callable only by the principals named in config."""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from components.base import Component
from components.buckets import private_bucket
from components.function_source import SourceArchive, build_archive
from components.source_closure import module_closure

PUBLIC = "allUsers"
_PRINCIPAL = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):.+$")

# Used when app/function has no requirements.txt of its own.
DEFAULT_REQUIREMENTS = (
    "functions-framework>=3.8",
    "pydantic>=2.7",
    "google-cloud-aiplatform>=1.70",
    "google-cloud-secret-manager>=2.20",
)


@dataclass(frozen=True)
class PredictionFunctionArgs:
    project: str
    region: str
    function_name: str
    source_bucket_name: str
    repository_id: str
    source_root: Path
    runtime_config_json: pulumi.Input[str]
    inference_account_email: pulumi.Input[str]
    build_account: gcp.serviceaccount.Account
    min_instances: int
    max_instances: int
    memory: str
    deletion_protection: bool
    # The serving shape measured in docs/serving.md: gunicorn processes x threads per
    # instance. Cloud Run gets one vCPU per process and as many requests at once as
    # the instance has threads, so it scales out instead of queueing inside one.
    workers: int = 2
    threads: int = 8
    invokers: Sequence[str] = ()
    public: bool = False
    # The archive holds these modules and everything they import; the first is the
    # one Cloud Functions' main.py imports ``entry_point`` from.
    entry_modules: Sequence[str] = ("app.function.main",)
    # Loaded by import-path string (the backend registry), so invisible to the
    # import walk: shipped whole. One that does not exist yet adds nothing.
    lazy_packages: Sequence[str] = ("app.backends.gcp",)
    entry_point: str = "predict"
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()
    build_dir: Path | None = None

    @property
    def concurrency(self) -> int:
        """Requests one instance takes at once: every gunicorn thread of every worker."""
        return self.workers * self.threads

    @property
    def cpu(self) -> str:
        """vCPUs per instance: one per worker, since scoring holds the GIL."""
        return str(self.workers)

    @property
    def serving_env(self) -> dict[str, str]:
        """What functions-framework's GunicornApplication reads to size itself."""
        return {"WORKERS": str(self.workers), "THREADS": str(self.threads)}

    def validate(self) -> None:
        if not re.match(r"^[a-z][a-z0-9-]{0,62}$", self.function_name):
            raise ValueError(f"PredictionFunctionArgs.function_name: {self.function_name!r}")
        if self.max_instances < max(1, self.min_instances):
            raise ValueError("PredictionFunctionArgs.max_instances: must be >= min_instances")
        for member in self.invokers:
            if member in (PUBLIC, "allAuthenticatedUsers") or not _PRINCIPAL.match(member):
                raise ValueError(
                    f"PredictionFunctionArgs.invokers: {member!r} is not a named principal "
                    "(set public=True to open the function to everyone)"
                )
        if isinstance(self.entry_modules, str) or not self.entry_modules:
            raise ValueError("PredictionFunctionArgs.entry_modules: a non-empty tuple of modules")
        if isinstance(self.lazy_packages, str):
            raise ValueError("PredictionFunctionArgs.lazy_packages: a tuple of packages")
        for name, modules in (
            ("entry_modules", self.entry_modules),
            ("lazy_packages", self.lazy_packages),
        ):
            bad = [m for m in modules if not all(p.isidentifier() for p in m.split("."))]
            if bad:
                raise ValueError(f"PredictionFunctionArgs.{name}: {bad} are not module names")
        if not 1 <= self.workers <= 8 or not 1 <= self.threads <= 64:
            raise ValueError("PredictionFunctionArgs.workers/threads: 1..8 and 1..64")
        if not self.entry_point.isidentifier():
            raise ValueError(f"PredictionFunctionArgs.entry_point: {self.entry_point!r}")


def staged_sources_condition(project_number: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """The IAM condition for Cloud Functions' gen-2 source bucket in ``region``,
    ``gcf-v2-sources-<number>-<region>``; with CMEK its name gains ``-<key hash>``,
    which the prefix covers. Buckets are global names, but a project grant only
    reaches buckets in the project."""
    return pulumi.Output.format(
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-{0}-{1}")',
        project_number,
        region,
    )


def function_files(args: PredictionFunctionArgs) -> list[str]:
    """The repository files the function's archive holds (the generated ``main.py``
    and ``requirements.txt`` come on top)."""
    return module_closure(args.source_root, args.entry_modules, args.lazy_packages)


def function_archive(args: PredictionFunctionArgs) -> SourceArchive:
    # Cloud Functions loads main.py at the archive root; the shim keeps the
    # package layout (and its `app.core` imports) as it is in the repository.
    shim = (
        '"""Generated by components/prediction_function.py: the Cloud Functions entry."""\n\n'
        f"from {args.entry_modules[0]} import {args.entry_point}  # noqa: F401\n"
    )
    reqs_path = args.source_root / "app" / "function" / "requirements.txt"
    requirements = (
        reqs_path.read_text() if reqs_path.is_file() else "\n".join(DEFAULT_REQUIREMENTS) + "\n"
    )
    return build_archive(
        args.source_root,
        function_files(args),
        extra={"main.py": shim, "requirements.txt": requirements},
    )


class PredictionFunction(Component):
    def __init__(
        self, name: str, args: PredictionFunctionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        # Built before any resource exists, so an unresolvable import fails the run
        # without leaving half a component registered.
        archive = function_archive(args)
        super().__init__("PredictionFunction", name, opts)
        self.archive = archive

        self.source_bucket = private_bucket(
            self.n("source"),
            project=args.project,
            name=args.source_bucket_name,
            location=args.region,
            labels=args.labels,
            kms_key_name=args.kms_key_name,
            deletion_protection=args.deletion_protection,
            versioning=False,
            opts=self.child(),
            depends_on=args.kms_ready,
        )
        build_dir = args.build_dir or Path(tempfile.gettempdir()) / "fraud-mlops-build"
        archive_path = self.archive.write_to(build_dir)
        self.source_object = gcp.storage.BucketObject(
            self.n("source-zip"),
            bucket=self.source_bucket.name,
            name=self.archive.object_name,
            source=pulumi.FileAsset(str(archive_path)),
            content_type="application/zip",
            opts=self.child(),
        )
        self.repository = gcp.artifactregistry.Repository(
            self.n("images"),
            project=args.project,
            location=args.region,
            repository_id=args.repository_id,
            format="DOCKER",
            description="Images built for the prediction function",
            labels=dict(args.labels),
            kms_key_name=args.kms_key_name,
            # Holds every image the function ran; Pulumi must not delete it in prod.
            opts=self.child(depends_on=args.kms_ready, protect=args.deletion_protection),
        )

        # The build runs as its own account, which gets what roles/run.builder (the role
        # Cloud Run documents for a build account) holds, each on the narrowest scope,
        # and gets it before the first build starts.
        build_member = args.build_account.email.apply(lambda e: f"serviceAccount:{e}")
        number = gcp.organizations.get_project_output(
            project_id=args.project, opts=self.lookup()
        ).number
        self.build_grants: list[pulumi.CustomResource] = [
            gcp.storage.BucketIAMMember(
                self.n("build-source-reader"),
                bucket=self.source_bucket.name,
                role="roles/storage.objectViewer",
                member=build_member,
                opts=self.child(),
            ),
            # Cloud Functions copies the archive into its own bucket and the build
            # fetches it from there. That bucket appears on the first deploy, so no
            # bucket grant can precede the build: a project grant held to it instead.
            gcp.projects.IAMMember(
                self.n("build-staged-source-reader"),
                project=args.project,
                role="roles/storage.objectViewer",
                member=build_member,
                condition=gcp.projects.IAMMemberConditionArgs(
                    title="gcf-staged-sources",
                    description="Only Cloud Functions' own source bucket in this region",
                    expression=staged_sources_condition(number, args.region),
                ),
                opts=self.child(),
            ),
            # repoAdmin, not writer: run.builder may delete artifacts (deleteArtifacts),
            # which writer lacks; the repository holds nothing but these builds.
            gcp.artifactregistry.RepositoryIamMember(
                self.n("build-image-writer"),
                project=args.project,
                location=args.region,
                repository=self.repository.name,
                role="roles/artifactregistry.repoAdmin",
                member=build_member,
                opts=self.child(),
            ),
            gcp.projects.IAMMember(
                self.n("build-log-writer"),
                project=args.project,
                role="roles/logging.logWriter",
                member=build_member,
                opts=self.child(),
            ),
        ]

        self.function = gcp.cloudfunctionsv2.Function(
            self.n("function"),
            project=args.project,
            location=args.region,
            name=args.function_name,
            description="Scores a card transaction for fraud",
            labels=dict(args.labels),
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime="python311",
                entry_point=args.entry_point,
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                    storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=self.source_bucket.name,
                        object=self.source_object.name,
                    )
                ),
                service_account=args.build_account.id,
                docker_repository=self.repository.id,
            ),
            service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                service_account_email=args.inference_account_email,
                min_instance_count=args.min_instances,
                max_instance_count=args.max_instances,
                available_memory=args.memory,
                available_cpu=args.cpu,
                max_instance_request_concurrency=args.concurrency,
                timeout_seconds=30,
                # Reachable over HTTPS, but every call needs run.invoker (no allUsers
                # unless `public` is set): authentication is IAM's job, not the network's.
                ingress_settings="ALLOW_ALL",
                all_traffic_on_latest_revision=True,
                environment_variables={
                    "FRAUD_MLOPS_CONFIG": args.runtime_config_json,
                    **args.serving_env,
                },
            ),
            # The image repository above uses the same key, as gen-2 CMEK requires.
            kms_key_name=args.kms_key_name,
            opts=self.child(depends_on=[*self.build_grants, *args.kms_ready]),
        )
        self.service_name = self.function.service_config.apply(
            lambda sc: sc.service if sc is not None and sc.service else args.function_name
        )

        callers = [*args.invokers, *([PUBLIC] if args.public else [])]
        self.invoker_grants = [
            gcp.cloudrunv2.ServiceIamMember(
                # Named by member, so reordering the config list changes nothing.
                self.n(f"invoker-{hashlib.sha256(member.encode()).hexdigest()[:8]}"),
                project=args.project,
                location=args.region,
                name=self.service_name,
                role="roles/run.invoker",
                member=member,
                opts=self.child(),
            )
            for member in callers
        ]
        self.url = self.function.url
        self.register_outputs(
            {
                "url": self.function.url,
                "service": self.service_name,
                "source_object": self.archive.object_name,
            }
        )
