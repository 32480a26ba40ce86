"""The project's two container images: what each holds, and its build context.

- ``trainer``: every pipeline step runs on it (KFP lightweight components with
  ``install_kfp_package=False``, so KFP's executor comes from the image, not pip at run
  time). It holds the closure of ``app/pipeline/steps/*`` and ``app/backends/gcp`` whole
  (the composition root loads a role's backend by import-path string).
- ``serving``: Vertex AI's custom container for lightgbm model versions, ``python -m
  app.serving``. It holds the closure of ``app/serving``.

An image's build context is exactly its files: the import closure (as the function archive
and the Composer upload are, :mod:`components.source_closure`) plus its pinned
requirements, staged into a directory of their own, so a file the image does not need
cannot reach it and no ``.dockerignore`` has to be kept in step. Requirements come from
``uv.lock`` (:mod:`images.requirements`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from components.source_closure import module_closure, package_modules

IMAGES_DIR = "images"


@dataclass(frozen=True)
class ImageSpec:
    name: str  # the image's name in the registry, and its files' stem here
    # Every module directly in these packages is an entry module (new step modules ship
    # without anyone editing a list), plus these single modules.
    entry_packages: tuple[str, ...]
    entry_modules: tuple[str, ...]
    # Loaded by import-path string, so invisible to the walk: shipped whole.
    lazy_packages: tuple[str, ...]
    # The distributions the closure imports; uv.lock supplies their dependencies, and
    # tests/images/ holds this list equal to what the closure's code imports.
    distributions: tuple[str, ...]
    # What the builder stage installs first to build the lock's sdist-only packages
    # (``pip --no-build-isolation``, so the build backend is hash-checked too); none when
    # every package has a wheel for the platform.
    build_distributions: tuple[str, ...] = ()

    @property
    def dockerfile(self) -> str:
        return f"{IMAGES_DIR}/{self.name}.Dockerfile"

    @property
    def requirements(self) -> str:
        return f"{IMAGES_DIR}/{self.name}-requirements.txt"

    @property
    def build_requirements(self) -> str | None:
        if not self.build_distributions:
            return None
        return f"{IMAGES_DIR}/{self.name}-build-requirements.txt"

    def modules(self, root: Path) -> list[str]:
        found = [m for p in self.entry_packages for m in package_modules(root, p)]
        return sorted({*found, *self.entry_modules})

    def code_files(self, root: Path) -> list[str]:
        """The repository files of the image's import closure."""
        return module_closure(root, self.modules(root), self.lazy_packages)

    def stage_context(self, root: Path, build_dir: Path) -> Path:
        return stage_context(self, root, build_dir)

    def context_files(self, root: Path) -> list[str]:
        """Every file of the build context (repository-relative, sorted)."""
        extra = [self.requirements, *([self.build_requirements] if self.build_requirements else [])]
        return sorted([*self.code_files(root), *extra])


TRAINER = ImageSpec(
    name="trainer",
    entry_packages=("app.pipeline.steps",),
    entry_modules=(),
    lazy_packages=("app.backends.gcp",),
    distributions=(
        "google-api-core",
        "google-auth",
        "google-cloud-aiplatform",
        "google-cloud-bigquery",
        # Every GCP backend must import in the image (the composition root loads them by
        # name), the landing events' Pub/Sub client included.
        "google-cloud-pubsub",
        "google-cloud-secret-manager",
        "google-cloud-storage",
        "google-crc32c",
        "kfp",  # the steps' SDK, and the executor that runs each step's function
        "lightgbm",
        "matplotlib",
        "numpy",
        "pandas",
        "protobuf",  # the Vertex backends' field masks and JSON conversion
        "pyarrow",
        "pydantic",
        "pyyaml",  # the pipeline runner reads the compiled template
        "requests",
        "scikit-learn",
        "sqlglot",
        "urllib3",
    ),
    # kfp-server-api (kfp's) is published as an sdist only; it builds with setuptools.
    build_distributions=("setuptools",),
)
SERVING = ImageSpec(
    name="serving",
    entry_packages=("app.serving",),
    entry_modules=(),
    lazy_packages=(),
    distributions=(
        "google-api-core",
        "google-auth",
        "google-cloud-storage",
        "lightgbm",
        "numpy",
        "pandas",
    ),
)
IMAGES: tuple[ImageSpec, ...] = (TRAINER, SERVING)


def by_name(name: str) -> ImageSpec:
    for spec in IMAGES:
        if spec.name == name:
            return spec
    raise ValueError(f"no image {name!r}; images: {', '.join(s.name for s in IMAGES)}")


def context_digest(root: Path, files: Sequence[str]) -> str:
    """SHA-256 over the files' paths and bytes: equal contexts, equal digests."""
    h = hashlib.sha256()
    for rel in sorted(files):
        data = (root / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def stage_context(spec: ImageSpec, root: Path, build_dir: Path) -> Path:
    """A directory holding exactly ``spec``'s context files at their repository paths.

    Content-addressed (``<build_dir>/<name>-<digest>``) and written once, whole (a
    temporary directory renamed into place), so an unchanged context is the same
    directory on every run and a half-written one is never built.
    """
    files = spec.context_files(root)
    target = build_dir / f"{spec.name}-{context_digest(root, files)[:16]}"
    if target.is_dir():
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=build_dir))
    try:
        for rel in files:
            dest = scratch / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, dest)
            os.chmod(dest, 0o644)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():  # not another run's identical copy: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
