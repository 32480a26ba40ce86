"""Run the compiled training pipeline on this machine with ``kfp.local``.

The runner executes the same compiled YAML that Vertex AI Pipelines runs (the local
platform compiles it, as the stack does before it uploads it), so it needs no import
of the pipeline's Python code and the local home tests the very template GCP gets.

Each step runs as a subprocess of the current interpreter (``SubprocessRunner(use_venv=False)``
replaces the spec's ``python3`` with ``sys.executable``), so the steps import the same
installed ``app`` package whatever the working directory.

Results come back as data: the pipeline's declared outputs, which the local runner
returns from the run itself, and each step's report (:mod:`app.core.step_report`) for
the steps' states and, when one failed, its project error with class and location.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from kfp import components, local

from app.core.config import KfpLocalPipelineConfig, RuntimeConfig
from app.core.errors import ConfigError, InvalidInputError, PipelineFailedError
from app.core.lifetime import PARENT_PID_ENV
from app.core.ports import Services
from app.core.records import PipelineResult, RunFailure
from app.core.step_report import STEP_REPORT_DIR_ENV, read_reports

LOG_FILE = "run.log"
REPORT_DIR = "step-reports"

# kfp.local keeps its settings in one process-wide object: one run at a time per process.
_RUN_LOCK = threading.Lock()
# A run name becomes a directory under the pipeline root: no separators, no "..".
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class KfpLocalPipelineRunner:
    def __init__(self, cfg: RuntimeConfig, *, pipeline_root: Path, template_path: Path) -> None:
        self.cfg = cfg
        self.pipeline_root = pipeline_root
        self.template_path = template_path

    @classmethod
    def from_config(cls, section: KfpLocalPipelineConfig, backends: Services) -> Self:
        return cls(
            backends.config,
            pipeline_root=section.pipeline_root,
            template_path=section.template_path,
        )

    def run(self, *, snapshot_id: str, run_name: str) -> PipelineResult:
        """Run to the end; the step logs go to ``<pipeline_root>/<run_name>/run.log``."""
        if not _RUN_NAME.match(run_name):
            raise InvalidInputError(
                f"run name {run_name!r} must be letters, digits, '.', '_' or '-'",
                location="run_name",
            )
        if not self.template_path.is_file():
            raise ConfigError(
                f"compiled pipeline {self.template_path} does not exist; the local platform "
                "compiles it before a DAG run (or: fraud-mlops compile-pipeline PATH)"
            )
        pipeline = components.load_component_from_file(str(self.template_path))
        run_root = self.pipeline_root / run_name
        run_root.mkdir(parents=True, exist_ok=True)
        reports = run_root / REPORT_DIR
        shutil.rmtree(reports, ignore_errors=True)  # a re-run reports afresh
        log_path = run_root / LOG_FILE
        with (
            _RUN_LOCK,
            log_path.open("w") as log,
            contextlib.redirect_stdout(log),
            _env(STEP_REPORT_DIR_ENV, str(reports)),
            # The steps die with this process: a killed run leaves none of them going.
            _env(PARENT_PID_ENV, str(os.getpid())),
        ):
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(run_root),
                raise_on_error=True,
            )
            with warnings.catch_warnings():
                # kfp.local warns that an image without "python" in its name may not run
                # Python; the trainer image does, and locally no image is used at all.
                warnings.filterwarnings("ignore", message=".*non-Python base image.*")
                try:
                    task = pipeline(
                        config_json=self.cfg.to_json(), snapshot_id=snapshot_id, run_name=run_name
                    )
                except RuntimeError as exc:
                    raise _failure(run_name, reports, log_path) from exc
        steps, _ = read_reports(reports)
        outputs = task.outputs
        version = str(outputs["deployed_version"]) or None
        return PipelineResult(
            run_name=run_name,
            snapshot_id=snapshot_id,
            deployed=version is not None,
            gate_reason=str(outputs["gate_reason"]),
            metrics={k: float(v) for k, v in json.loads(outputs["metrics_json"]).items()},
            model_version=version,
            steps=steps,
        )


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set one variable for the steps this process starts (they inherit the environment)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _failure(run_name: str, reports: Path, log_path: Path) -> PipelineFailedError:
    _, failure = read_reports(reports)
    if failure is None:
        # The step died before it could report (killed, or its imports failed).
        failure = RunFailure(
            task="unknown", error_class="PipelineFailedError", message="no step reported"
        )
    return PipelineFailedError(
        f"training run {run_name!r} failed at step {failure.task!r}: "
        f"{failure.error_class}: {failure.message}"
        + (f" ({failure.location})" if failure.location else "")
        + f" (step logs: {log_path})",
        failure=failure,
    )
