"""Compile the pipeline to its YAML spec: ``python -m app.pipeline.compile OUT.yaml``.

Needs no config, environment or backend: each run gets its config as the
``config_json`` parameter. Two things are fixed at compile time, because Vertex AI
reads them from the spec: which trainer the graph uses (``custom`` LightGBM, or
``automl``) and the trainer image every step runs in, named by digest on GCP.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from kfp import compiler

from app.core.config import IMAGE_DIGEST_REF
from app.core.errors import ConfigError
from app.pipeline.steps import TRAINER_IMAGE_PLACEHOLDER

Trainer = Literal["custom", "automl"]

# trainer -> "module:pipeline function", imported only when compiled (AutoML's graph
# needs google-cloud-pipeline-components, which the local home does not).
GRAPHS: dict[str, str] = {
    "custom": "app.pipeline.graph:fraud_training_pipeline",
    "automl": "app.pipeline.automl_graph:fraud_training_pipeline_automl",
}

# The local home's steps run in this venv (kfp.local's subprocess runner ignores the
# image); its spec still names a registry-qualified image, never a bare Docker Hub name.
LOCAL_TRAINER_IMAGE = "localhost/fraud-mlops/trainer:venv"
_DIGEST_REF = re.compile(IMAGE_DIGEST_REF)


def pipeline_function(trainer: str) -> Any:
    target = GRAPHS.get(trainer)
    if target is None:
        raise ConfigError(f"trainer {trainer!r} is not one of {sorted(GRAPHS)}")
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


def compile_pipeline(
    path: Path, *, trainer: Trainer = "custom", image: str = LOCAL_TRAINER_IMAGE
) -> Path:
    """Write the spec for ``trainer`` on ``image`` to ``path``; readers see the old file
    or the new one, never half.

    ``image`` must be the local image or a digest reference (``host/path@sha256:...``),
    so a spec for Vertex AI never runs whatever a tag points at today. An unchanged spec
    leaves the file as it is, so its mtime and hash mean something.
    """
    if image != LOCAL_TRAINER_IMAGE and not _DIGEST_REF.match(image):
        raise ConfigError(
            f"trainer image {image!r} must be pinned by digest (host/path@sha256:<64 hex>)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.yaml")
    try:
        compiler.Compiler().compile(pipeline_func=pipeline_function(trainer), package_path=str(tmp))
        tmp.write_text(_with_image(tmp.read_text(), image))
        if path.is_file() and path.read_bytes() == tmp.read_bytes():
            return path
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _with_image(text: str, image: str) -> str:
    """The spec with every step on the trainer image naming ``image``.

    Edited as data, not text: only ``deploymentSpec.executors.*.container.image``
    fields that hold the placeholder change (Google's own components keep theirs).
    """
    spec = yaml.safe_load(text)
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container", {})
        if container.get("image") == TRAINER_IMAGE_PLACEHOLDER:
            container["image"] = image
    out = yaml.safe_dump(spec, sort_keys=False)
    if TRAINER_IMAGE_PLACEHOLDER in out:
        raise ConfigError("the compiled spec still names the trainer image placeholder")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="where to write the pipeline YAML")
    parser.add_argument("--trainer", choices=sorted(GRAPHS), default="custom")
    parser.add_argument(
        "--image", default=LOCAL_TRAINER_IMAGE, help="trainer image, by digest for Vertex AI"
    )
    args = parser.parse_args(argv)
    print(compile_pipeline(args.out, trainer=args.trainer, image=args.image))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
