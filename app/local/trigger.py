"""The local stand-in for "object finalized -> Composer DAG run".

Pulls the landing zone's object-finalize events (:class:`app.core.ports.LandingEvents`)
and, for each, runs the real Airflow DAG (:mod:`app.local.airflow_run`) in a child
process with the object as run conf, waiting for it to finish. The child reports
task ends and the run's result as JSON lines on a pipe: nothing here reads its logs.

An event is acked when its run succeeded, dead-lettered when it failed for good (a bad
file), and handed back for another delivery when the failure may heal (a retryable
error, a crashed child), as a Pub/Sub subscription redelivers an unacked message.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.backends import Backends, local_airflow_home
from app.core import errors
from app.core.config import RuntimeConfig, config_env
from app.core.errors import BackendUnavailableError, PipelineFailedError
from app.core.flow import RunConf
from app.core.records import LandedObject, RunFailure
from app.local.airflow_run import DAGS_DIR
from app.local.pipeline_template import ensure_pipeline_template


@dataclass(frozen=True)
class DagRunReport:
    object_name: str
    run_id: str
    state: str
    tasks: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    failure: RunFailure | None = None

    @property
    def ok(self) -> bool:
        return self.state == "success"

    @property
    def error(self) -> str | None:
        return self.failure.message if self.failure else None

    @property
    def retryable(self) -> bool:
        """Whether running the same object again may succeed (see ``errors.retryable``)."""
        if self.ok or self.failure is None:
            return False
        cls = errors.by_name(self.failure.error_class)
        return cls is not None and cls.retryable

    def raise_for_error(self) -> None:
        """Re-raise a failed task's project error in this process: class, message, location."""
        if self.ok:
            return
        if self.failure is not None and errors.by_name(self.failure.error_class) is not None:
            raise errors.from_dict(self.failure.as_dict())
        raise PipelineFailedError(
            f"DAG run {self.run_id} {self.state}"
            + (f" at {self.failure.task}: {self.failure.message}" if self.failure else "")
            + f"; see {self.log_path}",
            failure=self.failure,
        )


class LocalAirflowTrigger:
    def __init__(self, cfg: RuntimeConfig) -> None:
        self.cfg = cfg
        self.backends = Backends(cfg)
        self.home = local_airflow_home(cfg)

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
        """Migrate Airflow's metadata DB once, whichever process gets here first."""
        marker = self.home / ".migrated"
        if marker.exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        # Two `airflow db migrate` at once on one SQLite file fail each other.
        with _exclusive(self.home / "migrate.lock"):
            if marker.exists():
                return
            airflow = Path(sys.executable).parent / "airflow"
            done = subprocess.run(
                [str(airflow), "db", "migrate"], env=self._env(), capture_output=True, text=True
            )
            if done.returncode != 0:
                (self.home / "migrate.log").write_text(done.stdout + done.stderr)
                raise BackendUnavailableError(
                    f"airflow db migrate failed (exit {done.returncode}); "
                    f"see {self.home / 'migrate.log'}"
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
        # The local platform's counterpart of the stack uploading the compiled template.
        ensure_pipeline_template(self.cfg)
        with _exclusive(self.home / "run.lock"):
            return self._run(landed, force=force, on_task=on_task)

    def _run(
        self, landed: LandedObject, *, force: bool, on_task: Callable[[str], None] | None
    ) -> DagRunReport:
        conf = RunConf.for_object(landed, force=force).model_dump()
        log_dir = self.home / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = (landed.content_hash or str(landed.generation))[:8]
        log_path = log_dir / f"{landed.name}-{stamp}-{os.getpid()}.log"
        result: dict[str, object] | None = None
        failures: dict[str, RunFailure] = {}
        read_fd, write_fd = os.pipe()
        try:
            with log_path.open("w") as log:
                child = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "app.local.airflow_run",
                        json.dumps(conf),
                        str(write_fd),
                    ],
                    env=self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                )
                os.close(write_fd)
                write_fd = -1
                with os.fdopen(read_fd, "r") as events:
                    read_fd = -1
                    for line in events:
                        event = json.loads(line)
                        if event["event"] == "result":
                            result = event
                        elif event["event"] == "task":
                            task_id = str(event["task_id"])
                            if event["state"] == "failed":
                                failures[task_id] = RunFailure.from_dict(event["failure"])
                            else:
                                failures.pop(task_id, None)  # a retry that succeeded
                            if on_task is not None and event["state"] != "failed":
                                on_task(task_id)
                child.wait()
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
        if result is None:
            raise PipelineFailedError(f"DAG run for {landed.name} crashed; see {log_path}")
        tasks = {str(k): str(v) for k, v in dict(result["tasks"]).items()}  # type: ignore[call-overload]
        failed = [t for t, state in tasks.items() if state == "failed" and t in failures]
        return DagRunReport(
            object_name=landed.name,
            run_id=str(result["run_id"]),
            state=str(result["state"]),
            tasks=tasks,
            log_path=str(log_path),
            failure=failures[failed[0]] if failed else None,
        )

    def watch(
        self,
        *,
        interval: float = 2.0,
        once: bool = False,
        on_report: Callable[[DagRunReport], None] | None = None,
    ) -> list[DagRunReport]:
        """Poll the landing folder: every settled new file starts one DAG run."""
        events = self.backends.landing_events
        reports: list[DagRunReport] = []
        while True:
            events.discover(settle_seconds=interval)
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
        """Run the DAG once per pending object-finalize event (or ``only``'s), oldest first.

        A run that may heal on retry hands its event back and ends this round, so the
        next round (the next ``watch`` poll) delivers it again.
        """
        events = self.backends.landing_events
        events.recover()
        reports = []
        while (claim := events.pull(only)) is not None:
            try:
                report = self.run(claim.landed, force=force, on_task=on_task)
            except BaseException:
                # The run did not report (migrate failed, the child crashed, Ctrl-C):
                # nothing says the file is bad, so it is delivered again later.
                events.nack(claim, retry=True)
                raise
            reports.append(report)
            if report.ok:
                events.ack(claim)
            elif report.retryable:
                events.nack(claim, retry=True)
                break
            else:
                events.nack(claim, retry=False)  # a bad file: dead-lettered, for people
        return reports


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One holder at a time across processes (``max_active_runs=1`` for ``dag.test``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
