"""The trainer and serving images: an Artifact Registry repository, and both images built
from their staged contexts (:mod:`images`) and pushed, exported as digest references.

Each image's build context is a directory the component stages before any resource
exists: exactly ``ImageSpec.context_files()`` (the import closure of the image's entry
modules plus its pinned requirements), content-addressed under ``build_dir``. A staged
directory, not the repository root with a ``.dockerignore``: an ignore file lists what
to leave out, so a new module of ``app/local`` would ship until someone remembered it;
the closure lists what goes in. The image's tag is the digest of that context and its
Dockerfile, so an unchanged context is the same tag, and the exported reference is
always ``REGION-docker.pkg.dev/PROJECT/REPO/NAME@sha256:...``, the form the runtime
config takes (``IMAGE_DIGEST_REF``).

CI that builds with docker itself passes ``trainer_image_ref`` / ``serving_image_ref``
(digest references): that image is then not built here, and the reference is exported
as given.
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from app.core.config import IMAGE_DIGEST_REF
from components.base import Component
from images import SERVING, TRAINER, ImageSpec, context_digest

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]$")
_REPOSITORY = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PRINCIPAL = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):.+$")
# Artifact Registry's user name for an OAuth access token.
_TOKEN_USER = "oauth2accesstoken"


@dataclass(frozen=True)
class ContainerImagesArgs:
    project: str
    region: str
    repository_id: str
    source_root: Path
    # False: the repository exists already (made elsewhere); it is used, not managed.
    create_repository: bool = True
    # Digest references built elsewhere (CI); a set one is exported and not built here.
    trainer_image_ref: str | None = None
    serving_image_ref: str | None = None
    # Principals that pull the images (roles/artifactregistry.reader on the repository),
    # keyed by a stable name for the grant: the pipeline's runner, Vertex AI's agents.
    readers: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Layers cached in the repository (``NAME:buildcache``) between builds.
    registry_cache: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    kms_ready: Sequence[pulumi.Resource] = ()
    deletion_protection: bool = True
    build_dir: Path | None = None

    def validate(self) -> None:
        if not _PROJECT.match(self.project):
            raise ValueError(f"ContainerImagesArgs.project: {self.project!r} is not a project id")
        if not _REGION.match(self.region):
            raise ValueError(f"ContainerImagesArgs.region: {self.region!r} is not a region")
        if not _REPOSITORY.match(self.repository_id):
            raise ValueError(
                f"ContainerImagesArgs.repository_id: {self.repository_id!r} (lowercase letters, "
                "digits and '-', starting with a letter, at most 63)"
            )
        for name in ("trainer_image_ref", "serving_image_ref"):
            ref = getattr(self, name)
            if ref is not None and not re.match(IMAGE_DIGEST_REF, ref):
                raise ValueError(
                    f"ContainerImagesArgs.{name}: {ref!r} is not a digest reference "
                    "(host/path@sha256:<64 hex>)"
                )
        if not self.create_repository and self.kms_key_name is not None:
            raise ValueError(
                "ContainerImagesArgs.kms_key_name: only for a repository this component creates"
            )
        for key, member in self.readers.items():
            if not re.match(r"^[a-z][a-z0-9-]{0,39}$", key):
                raise ValueError(f"ContainerImagesArgs.readers: key {key!r} is not a short name")
            if isinstance(member, str) and not _PRINCIPAL.match(member):
                raise ValueError(f"ContainerImagesArgs.readers[{key!r}]: {member!r}")
        if self.needs_build() and not self.source_root.is_dir():
            raise ValueError(f"ContainerImagesArgs.source_root: {self.source_root} is no directory")

    @property
    def registry_host(self) -> str:
        return f"{self.region}-docker.pkg.dev"

    def image_path(self, name: str) -> str:
        return f"{self.registry_host}/{self.project}/{self.repository_id}/{name}"

    def prebuilt(self, spec: ImageSpec) -> str | None:
        return {TRAINER.name: self.trainer_image_ref, SERVING.name: self.serving_image_ref}[
            spec.name
        ]

    def needs_build(self) -> bool:
        return self.trainer_image_ref is None or self.serving_image_ref is None


@dataclass(frozen=True)
class StagedImage:
    spec: ImageSpec
    context: Path  # the staged directory: the build context, exactly
    files: tuple[str, ...]  # its files, repository-relative
    tag: str  # content-addressed: the context's and the Dockerfile's digest


def stage_images(args: ContainerImagesArgs) -> dict[str, StagedImage]:
    """The images this component builds, each with its staged context."""
    build_dir = (args.build_dir or Path(tempfile.gettempdir()) / "fraud-mlops-build") / "images"
    staged: dict[str, StagedImage] = {}
    for spec in (TRAINER, SERVING):
        if args.prebuilt(spec) is not None:
            continue
        files = spec.context_files(args.source_root)
        digest = context_digest(args.source_root, [*files, spec.dockerfile])
        staged[spec.name] = StagedImage(
            spec=spec,
            context=spec.stage_context(args.source_root, build_dir),
            files=tuple(files),
            tag=f"ctx-{digest[:20]}",
        )
    return staged


def _digest_ref(path: str, digest: str) -> str:
    if not _DIGEST.match(digest or ""):
        raise ValueError(f"the build of {path} pushed no sha256 digest (got {digest!r})")
    return f"{path}@{digest}"


class ContainerImages(Component):
    def __init__(
        self, name: str, args: ContainerImagesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        # Staged before any resource exists: an unresolvable import fails the run here.
        self.staged = stage_images(args)
        super().__init__("ContainerImages", name, opts)

        self.repository: gcp.artifactregistry.Repository | None = None
        repo_deps: list[pulumi.Resource] = []
        if args.create_repository:
            self.repository = gcp.artifactregistry.Repository(
                self.n("repository"),
                project=args.project,
                location=args.region,
                repository_id=args.repository_id,
                format="DOCKER",
                description="The trainer and serving images, addressed by digest",
                labels=dict(args.labels),
                kms_key_name=args.kms_key_name,
                # Holds every image a deployed model version or a past run names.
                opts=self.child(depends_on=args.kms_ready, protect=args.deletion_protection),
            )
            repo_deps.append(self.repository)
        repository_name: pulumi.Input[str] = (
            self.repository.name if self.repository is not None else args.repository_id
        )
        self.reader_grants = [
            gcp.artifactregistry.RepositoryIamMember(
                self.n(f"reader-{key}"),
                project=args.project,
                location=args.region,
                repository=repository_name,
                role="roles/artifactregistry.reader",
                member=member,
                opts=self.child(),
            )
            for key, member in sorted(args.readers.items())
        ]

        self.images: dict[str, docker_build.Image] = {}
        refs: dict[str, pulumi.Output[str]] = {}
        if self.staged:
            # The deployer's own short-lived token: the build pushes as whoever runs `up`.
            token = gcp.organizations.get_client_config_output(opts=self.lookup()).access_token
            registry = docker_build.RegistryArgs(
                address=args.registry_host,
                username=_TOKEN_USER,
                password=pulumi.Output.secret(token),
            )
        for spec in (TRAINER, SERVING):
            prebuilt = args.prebuilt(spec)
            if prebuilt is not None:
                refs[spec.name] = pulumi.Output.from_input(prebuilt)
                continue
            staged = self.staged[spec.name]
            path = args.image_path(spec.name)
            cache = f"{path}:buildcache"
            image = docker_build.Image(
                self.n(spec.name),
                context=docker_build.BuildContextArgs(location=str(staged.context)),
                dockerfile=docker_build.DockerfileArgs(
                    location=str(args.source_root / spec.dockerfile)
                ),
                platforms=[docker_build.Platform.LINUX_AMD64],
                push=True,
                tags=[f"{path}:{staged.tag}"],
                registries=[registry],
                labels={
                    "org.opencontainers.image.title": f"fraud-mlops-{spec.name}",
                    "fraud-mlops.context": staged.tag,
                },
                cache_from=(
                    [
                        docker_build.CacheFromArgs(
                            registry=docker_build.CacheFromRegistryArgs(ref=cache)
                        )
                    ]
                    if args.registry_cache
                    else None
                ),
                cache_to=(
                    [
                        docker_build.CacheToArgs(
                            registry=docker_build.CacheToRegistryArgs(
                                ref=cache,
                                mode=docker_build.CacheMode.MAX,
                                # Artifact Registry takes the cache as an OCI image manifest.
                                image_manifest=True,
                                oci_media_types=True,
                            )
                        )
                    ]
                    if args.registry_cache
                    else None
                ),
                # A preview builds nothing: a build is the slow, pushing half of `up`.
                build_on_preview=False,
                opts=self.child(depends_on=repo_deps),
            )
            self.images[spec.name] = image
            refs[spec.name] = image.digest.apply(functools.partial(_digest_ref, path))

        self.trainer_image = refs[TRAINER.name]
        self.serving_image = refs[SERVING.name]
        self.register_outputs(
            {
                "trainer_image": self.trainer_image,
                "serving_image": self.serving_image,
                "repository": args.image_path("").rstrip("/"),
            }
        )
