"""Compile the training pipeline where the local runner reads it.

On GCP the stack compiles the pipeline and uploads the YAML; locally this does the
same before each DAG run, so the local home always runs the template its code
compiles to, the very file Vertex AI would get.
"""

from __future__ import annotations

from pathlib import Path

from app.backends import local_pipeline_template
from app.core.config import RuntimeConfig
from app.pipeline.compile import compile_pipeline


def ensure_pipeline_template(cfg: RuntimeConfig) -> Path | None:
    """Write (or confirm) the compiled template; None when a cloud runner is configured."""
    path = local_pipeline_template(cfg)
    return None if path is None else compile_pipeline(path)
