"""The local stand-in for "object finalized -> Composer DAG run".

Pulls the landing zone's object-finalize events (:class:`app.core.ports.LandingEvents`)
and, for each, runs the real Airflow DAG (:mod:`app.local.airflow_run`) in a child
process with the object as run conf, waiting for it to finish. The child reports
task ends and the run's result as JSON lines on a pipe: nothing here reads its logs.

Each delivery ends one of three ways (:func:`settle`):

- the run succeeded: acked;
- it failed for good, the file's own fault (a project error that is not
  ``retryable``, an ``InvalidInputError`` with its ``file:line:column``):
  dead-lettered at once with that reason, never retried;
- it may heal (a ``retryable`` error, a crashed or killed run, migrate or lock
  contention, an error from outside the project): handed back, due again after
  :func:`app.core.records.redelivery_delay` (1 s doubling to 30 s), and
  dead-lettered with its reason after ``MAX_DELIVERIES``, as a Pub/Sub subscription
  with a dead-letter policy does. ``fraud-mlops retry`` re-queues dead letters.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.backends import Backends, local_airflow_home
from app.core import errors
from app.core.config import RuntimeConfig, config_env
from app.core.errors import BackendUnavailableError, PipelineFailedError
from app.core.flow import RunConf
from app.core.ports import LandingEvents
from app.core.records import (
    MAX_DELIVERIES,
    LandedObject,
    LandingClaim,
    RunFailure,
    redelivery_delay,
)
from app.local.airflow_run import DAGS_DIR
from app.local.pipeline_template import ensure_pipeline_template


@dataclass(frozen=True)
class DagRunReport:
    object_name: str
    run_id: str
    state: str  # Airflow's run state, or "crashed" when the run never reported one
    tasks: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    failure: RunFailure | None = None
    # What became of the event: "acked", "redelivered in 2s", "dead-lettered".
    settled: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "success"

    @property
    def error(self) -> str | None:
        return self.failure.message if self.failure else None

    @property
    def final(self) -> bool:
        """Failed for good: the same file would fail the same way (see :func:`is_final`)."""
        return not self.ok and self.state != "crashed" and is_final(self.failure)

    @property
    def retryable(self) -> bool:
        """Whether delivering the same object again may succeed."""
        return not self.ok and not self.final

    def raise_for_error(self) -> None:
        """Re-raise a failed task's project error in this process: class, message, location."""
        if self.ok:
            return
        if self.failure is not None and errors.by_name(self.failure.error_class) is not None:
            raise errors.from_dict(self.failure.as_dict())
        raise PipelineFailedError(
            f"DAG run {self.run_id or 'for ' + self.object_name} {self.state}"
            + (f" at {self.failure.task}: {self.failure.message}" if self.failure else "")
            + (f"; see {self.log_path}" if self.log_path else "")
            + (f"; event {self.settled}" if self.settled else ""),
            failure=self.failure,
        )


def is_final(failure: RunFailure | None) -> bool:
    """Whether a failure is the file's own fault, so no redelivery can heal it.

    Only a project error that says it is not ``retryable`` counts (a bad file, a bad
    config): anything else, an unknown class or no failure at all (a killed task, a
    timeout), may be the machine's, and gets its bounded redeliveries.
    """
    if failure is None:
        return False
    cls = errors.by_name(failure.error_class)
    return cls is not None and not cls.retryable


def failure_of(exc: BaseException, *, task: str) -> RunFailure:
    """An exception raised around a run (not by a task), as a failure record."""
    if isinstance(exc, errors.FraudMlopsError):
        return RunFailure.from_dict({"task": task, **exc.to_dict()})
    return RunFailure(task=task, error_class=type(exc).__name__, message=str(exc))


def settle(events: LandingEvents, claim: LandingClaim, report: DagRunReport) -> str:
    """Ack, hand back with backoff, or dead-letter the claim by its run's result."""
    if report.ok:
        events.ack(claim)
        return "acked"
    reason = report.failure or RunFailure(
        task="run", error_class="PipelineFailedError", message=f"DAG run {report.state}"
    )
    if report.final:
        events.dead_letter(claim, reason=reason)
        return "dead-lettered"
    if claim.delivery_attempt >= MAX_DELIVERIES:
        events.nack(claim, reason=reason, retry_after=0.0)  # dead-letters it
        return f"dead-lettered after {claim.delivery_attempt} deliveries"
    delay = redelivery_delay(claim.delivery_attempt)
    events.nack(claim, reason=reason, retry_after=delay)
    return f"redelivered in {delay:g}s"


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
        """Migrate Airflow's metadata DB once, whichever process gets here first.

        Two ``airflow db migrate`` at once on one SQLite file fail each other, so the
        check and the migration are one step under a cross-process lock: concurrent
        first starts wait for the first one's migration instead of failing. A
        migration that fails anyway raises a retryable error: the event is redelivered.
        """
        marker = self.home / ".migrated"

        def migrated() -> bool:
            # The marker is written after a migration that finished; a deleted DB needs
            # a new one.
            return marker.exists() and (self.home / "airflow.db").exists()

        if migrated():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.home / "migrate.lock"):
            if migrated():
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
        on_start: Callable[[str], None] | None = None,
    ) -> DagRunReport:
        self.ensure_db()
        with _exclusive(self.home / "run.lock"):
            # The local platform's counterpart of the stack uploading the compiled
            # template; under the run lock, so no run reads it while another writes it.
            ensure_pipeline_template(self.cfg)
            return self._run(landed, force=force, on_task=on_task, on_start=on_start)

    def _run(
        self,
        landed: LandedObject,
        *,
        force: bool,
        on_task: Callable[[str], None] | None,
        on_start: Callable[[str], None] | None = None,
    ) -> DagRunReport:
        conf = RunConf.for_object(landed, force=force).model_dump()
        log_dir = self.home / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = (landed.content_hash or str(landed.generation))[:8]
        log_path = log_dir / f"{landed.name}-{stamp}-{os.getpid()}.log"
        result: dict[str, object] | None = None
        failures: dict[str, RunFailure] = {}
        read_fd, write_fd = os.pipe()
        child: subprocess.Popen[bytes] | None = None
        try:
            with log_path.open("w") as log:
                child = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "app.local.airflow_run",
                        json.dumps(conf),
                        str(write_fd),
                        str(os.getpid()),  # the child dies with this process
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
                            if event["state"] == "running":
                                if on_start is not None:
                                    on_start(task_id)
                                continue
                            if event["state"] == "failed":
                                failures[task_id] = RunFailure.from_dict(event["failure"])
                            else:
                                failures.pop(task_id, None)  # a retry that succeeded
                            if on_task is not None and event["state"] != "failed":
                                on_task(task_id)
                child.wait()
        except BaseException:
            # Interrupted while it ran (Ctrl-C): the event goes back for another
            # delivery, so this run must not go on beside that one.
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            raise
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
        on_start: Callable[[str], None] | None = None,
    ) -> list[DagRunReport]:
        """Run the DAG once per due object-finalize event (or ``only``'s), oldest first.

        Claims of killed consumers are handed back first. Each delivery is settled by
        :func:`settle`; an event handed back is not due again this round (its backoff),
        so the round goes on with the others.
        """
        events = self.backends.landing_events
        events.recover()
        reports = []
        while (claim := events.pull(only)) is not None:
            try:
                report = self.run(claim.landed, force=force, on_task=on_task, on_start=on_start)
            except Exception as exc:
                # The run did not report (migrate failed, the child crashed, the lock
                # went): nothing says the file is bad, so it is delivered again later.
                report = DagRunReport(
                    object_name=claim.landed.name,
                    run_id="",
                    state="crashed",
                    failure=failure_of(exc, task="run"),
                )
            except BaseException as exc:  # Ctrl-C, SystemExit: back at once, then stop
                events.nack(claim, reason=failure_of(exc, task="run"), retry_after=0.0)
                raise
            reports.append(replace(report, settled=settle(events, claim, report)))
            if only is not None:
                break  # ingest waits for its own file's one delivery
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
