"""How a pipeline step tells its runner how it ended: a JSON file, not a log line.

A runner that wants the report sets :data:`STEP_REPORT_DIR_ENV` for the steps it
starts (the local kfp runner does); each step wraps its body in :func:`reported`,
which writes ``<dir>/<step>.json`` with the step's state and, when it failed, the
project error as data (class, message, location). Where the variable is unset (on
Vertex AI, which records each task's state and error itself) nothing is written.

A local runner also sets :data:`app.core.lifetime.PARENT_PID_ENV`: a step then dies
with the process that started it, so a run killed mid-pipeline leaves no step behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core.errors import FraudMlopsError
from app.core.lifetime import die_with_parent_from_env
from app.core.records import RunFailure

STEP_REPORT_DIR_ENV = "FRAUD_MLOPS_STEP_REPORT_DIR"
SUCCEEDED = "succeeded"
FAILED = "failed"


@contextmanager
def reported(step: str) -> Iterator[None]:
    die_with_parent_from_env()
    directory = os.environ.get(STEP_REPORT_DIR_ENV)
    try:
        yield
    except BaseException as exc:
        if directory:
            _write(Path(directory), step, {"state": FAILED, "failure": _failure(step, exc)})
        raise
    if directory:
        _write(Path(directory), step, {"state": SUCCEEDED})


def _failure(step: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FraudMlopsError):
        data = exc.to_dict()
        return RunFailure(step, data["error_class"], data["message"], data["location"]).as_dict()
    return RunFailure(step, type(exc).__name__, str(exc)).as_dict()


def _write(directory: Path, step: str, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{step}.json"
    tmp = directory / f".{step}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"step": step, **data}))
    os.replace(tmp, target)


def read_reports(directory: Path) -> tuple[dict[str, str], RunFailure | None]:
    """Each reporting step's state, and the failure if one step failed."""
    states: dict[str, str] = {}
    failure: RunFailure | None = None
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        data = json.loads(path.read_text())
        states[str(data["step"])] = str(data["state"])
        if data["state"] == FAILED and failure is None:
            failure = RunFailure.from_dict(data["failure"])
    return states, failure
