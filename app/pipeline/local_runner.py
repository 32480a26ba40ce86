"""Run the training pipeline on this machine with ``kfp.local``.

Each step runs as a subprocess of the current interpreter (``SubprocessRunner(use_venv=False)``
replaces the spec's ``python3`` with ``sys.executable``), so the steps import the same
installed ``app`` package whatever the working directory.

Results come from the pipeline's declared outputs (``TrainingOutputs``), which the local
runner returns from the run itself: no parsing of kfp's ``executor_output.json`` layout,
and no asking the registry afterwards what changed, which a concurrent run could race.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import warnings
from pathlib import Path

from kfp import local

from app.core.config import KfpLocalPipelineConfig, RuntimeConfig
from app.core.errors import ConfigError, InvalidInputError, PipelineFailedError
from app.core.ports import PipelineResult
from app.pipeline.pipeline import fraud_training_pipeline

LOG_FILE = "run.log"

# kfp.local keeps its settings in one process-wide object: one run at a time per process.
_RUN_LOCK = threading.Lock()
# A run name becomes a directory under the pipeline root: no separators, no "..".
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")
_EXCEPTION_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)\b.*)$")


class KfpLocalPipelineRunner:
    def __init__(self, cfg: RuntimeConfig) -> None:
        if not isinstance(cfg.pipeline, KfpLocalPipelineConfig):
            raise ConfigError(
                f"kfp.local runner needs pipeline kind 'kfp_local', not {cfg.pipeline.kind!r}"
            )
        self.cfg = cfg
        self.pipeline_root = cfg.pipeline.pipeline_root

    def run(self, *, snapshot_id: str, run_name: str) -> PipelineResult:
        """Run to the end; the step logs go to ``<pipeline_root>/<run_name>/run.log``."""
        if not _RUN_NAME.match(run_name):
            raise InvalidInputError(
                f"run name {run_name!r} must be letters, digits, '.', '_' or '-'",
                location="run_name",
            )
        run_root = self.pipeline_root / run_name
        run_root.mkdir(parents=True, exist_ok=True)
        log_path = run_root / LOG_FILE
        with _RUN_LOCK, log_path.open("w") as log, contextlib.redirect_stdout(log):
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
                    task = fraud_training_pipeline(
                        config_json=self.cfg.to_json(), snapshot_id=snapshot_id
                    )
                except RuntimeError as exc:
                    log.flush()
                    raise _failure(run_name, exc, log_path) from exc
        outputs = task.outputs
        version = str(outputs["deployed_version"]) or None
        return PipelineResult(
            run_name=run_name,
            snapshot_id=snapshot_id,
            deployed=version is not None,
            gate_reason=str(outputs["gate_reason"]),
            metrics={k: float(v) for k, v in json.loads(outputs["metrics_json"]).items()},
            model_version=version,
        )


def _failure(run_name: str, exc: RuntimeError, log_path: Path) -> PipelineFailedError:
    message = _ANSI.sub("", str(exc))
    match = _FAILED_TASK.search(message)
    step = match.group(1) if match else "unknown step"
    cause = _last_exception_line(log_path)
    return PipelineFailedError(
        f"training run {run_name!r} failed at step {step!r}"
        + (f": {cause}" if cause else "")
        + f" (step logs: {log_path})"
    )


def _last_exception_line(log_path: Path) -> str | None:
    """The final ``SomeError: message`` line of the failed step's traceback."""
    lines = _ANSI.sub("", log_path.read_text(errors="replace")).splitlines()
    for line in reversed(lines):
        found = _EXCEPTION_LINE.match(line)
        if found:
            return found.group(1).strip()
    return None
