"""``fraud-mlops ingest``: land a file, then let the trigger run the DAG for it and wait."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from app.backends import Backends
from app.core.config import RuntimeConfig
from app.core.errors import ConflictError
from app.local.trigger import DagRunReport, LocalAirflowTrigger


def ingest(
    cfg: RuntimeConfig,
    path: Path,
    *,
    name: str | None = None,
    force: bool = False,
    quiet: bool = False,
    on_task: Callable[[str], None] | None = None,
) -> DagRunReport:
    landed = Backends(cfg).landing.land(path, name=name)
    say = (lambda _msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f"landed {landed.name} (sha256 {(landed.content_hash or '')[:12]}); running DAG")
    trigger = LocalAirflowTrigger(cfg)

    def task_done(task_id: str) -> None:
        say(f"  task done: {task_id}")
        if on_task is not None:
            on_task(task_id)

    def task_started(task_id: str) -> None:
        say(f"  task started: {task_id}")

    reports = trigger.dispatch_pending(
        only=landed, force=force, on_task=task_done, on_start=task_started
    )
    if not reports:
        raise ConflictError(f"the event for {landed.name} was taken by another trigger (watch?)")
    report = reports[-1]
    say(
        f"DAG run {report.run_id or '(none)'}: {report.state} ({report.log_path or 'no log'}); "
        f"event {report.settled}"
    )
    for task, state in sorted(report.tasks.items()):
        say(f"  {task}: {state}")
    return report


def ingest_or_raise(
    cfg: RuntimeConfig, path: Path, *, name: str | None = None, force: bool = False
) -> DagRunReport:
    report = ingest(cfg, path, name=name, force=force)
    report.raise_for_error()
    return report
