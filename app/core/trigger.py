"""The local stand-in for "object finalized -> Composer DAG run".

Consumes the landing zone's object-finalize events and, for each, runs the
real Airflow DAG (:mod:`app.core.airflow_local`) in a child process with the
object as run conf, waiting for it to finish.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.core import backends, errors
from app.core.airflow_local import DAGS_DIR, RESULT_MARKER
from app.core.config import LocalAirflowConfig, RuntimeConfig, config_env
from app.core.errors import BackendUnavailableError, PipelineFailedError
from app.core.landing import LocalLandingZone
from app.core.ports import LandedObject

_TASK_END = "[DAG TEST] end task task_id="
# How a task's project error appears in the task log: "app.core.errors.InvalidInputError: msg".
_PROJECT_ERROR = re.compile(r"^app\.core\.errors\.(\w+): (.+)$")


@dataclass(frozen=True)
class DagRunReport:
    object_name: str
    run_id: str
    state: str
    tasks: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    error_type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "success"

    def raise_for_error(self) -> None:
        """Re-raise a failed task's project error in this process, with its type."""
        if self.ok:
            return
        kind = getattr(errors, self.error_type or "", None)
        if isinstance(kind, type) and issubclass(kind, errors.FraudMlopsError):
            if kind is errors.InvalidInputError:
                raise errors.InvalidInputError(self.error or "")
            raise kind(self.error)
        raise PipelineFailedError(f"DAG run {self.run_id} {self.state}; see {self.log_path}")


class LocalAirflowTrigger:
    def __init__(self, cfg: RuntimeConfig) -> None:
        if not isinstance(cfg.orchestrator, LocalAirflowConfig):
            raise BackendUnavailableError(
                "the local trigger needs orchestrator kind 'airflow_local'"
            )
        self.cfg = cfg
        self.home = cfg.orchestrator.home

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(config_env(self.cfg))
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # kfp.local steps run with this interpreter; keep its venv first on PATH.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        return env

    def ensure_db(self) -> None:
        marker = self.home / ".migrated"
        if marker.exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        airflow = Path(sys.executable).parent / "airflow"
        done = subprocess.run(
            [str(airflow), "db", "migrate"], env=self._env(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BackendUnavailableError(
                f"airflow db migrate failed: {done.stderr.strip().splitlines()[-1:]}"
            )
        marker.touch()

    def run(
        self,
        landed: LandedObject,
        *,
        force: bool = False,
        on_task: Callable[[str], None] | None = None,
    ) -> DagRunReport:
        self.ensure_db()
        with _exclusive(self.home / "run.lock"):
            return self._run(landed, force=force, on_task=on_task)

    def _run(
        self, landed: LandedObject, *, force: bool, on_task: Callable[[str], None] | None
    ) -> DagRunReport:
        conf = {
            "object_name": landed.name,
            "uri": landed.uri,
            "content_hash": landed.content_hash,
            "force": force,
        }
        log_dir = self.home / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{landed.name}-{landed.content_hash[:8]}-{os.getpid()}.log"
        result: dict[str, object] | None = None
        error: tuple[str, str] | None = None
        with (
            log_path.open("w") as log,
            subprocess.Popen(
                [sys.executable, "-m", "app.core.airflow_local", json.dumps(conf)],
                env=self._env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as child,
        ):
            assert child.stdout is not None
            for line in child.stdout:
                log.write(line)
                if line.startswith(RESULT_MARKER):
                    result = json.loads(line[len(RESULT_MARKER) :])
                elif error is None and (found := _PROJECT_ERROR.match(line.strip())):
                    error = (found.group(1), found.group(2))
                elif on_task is not None and _TASK_END in line:
                    task_id = line.split(_TASK_END, 1)[1].split()[0]
                    on_task(task_id)
        if result is None:
            raise PipelineFailedError(f"DAG run for {landed.name} crashed; see {log_path}")
        return DagRunReport(
            object_name=landed.name,
            run_id=str(result["run_id"]),
            state=str(result["state"]),
            tasks=dict(result["tasks"]),  # type: ignore[call-overload]
            log_path=str(log_path),
            error_type=error[0] if error else None,
            error=error[1] if error else None,
        )

    def watch(
        self,
        *,
        interval: float = 2.0,
        once: bool = False,
        on_report: Callable[[DagRunReport], None] | None = None,
    ) -> list[DagRunReport]:
        """Poll the landing folder: every settled new file starts one DAG run."""
        landing = backends.landing_zone(self.cfg)
        if not isinstance(landing, LocalLandingZone):
            raise BackendUnavailableError("this landing zone is consumed by Composer, not locally")
        reports: list[DagRunReport] = []
        while True:
            landing.scan(settle_seconds=interval)
            for report in self.dispatch_pending():
                reports.append(report)
                if on_report is not None:
                    on_report(report)
            if once:
                return reports
            time.sleep(interval)

    def dispatch_pending(
        self,
        *,
        only: LandedObject | None = None,
        force: bool = False,
        on_task: Callable[[str], None] | None = None,
    ) -> list[DagRunReport]:
        """Run the DAG once per pending object-finalize event (or ``only``'s), oldest first."""
        landing = backends.landing_zone(self.cfg)
        if not isinstance(landing, LocalLandingZone):
            raise BackendUnavailableError("this landing zone is consumed by Composer, not locally")
        landing.requeue_orphans()
        reports = []
        while (item := landing.claim_next(only)) is not None:
            event_file, landed = item
            try:
                report = self.run(landed, force=force, on_task=on_task)
            except BaseException:
                landing.finish(event_file, ok=False)
                raise
            landing.finish(event_file, ok=report.ok)
            reports.append(report)
        return reports


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One DAG run at a time across processes (``max_active_runs=1`` for ``dag.test``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
