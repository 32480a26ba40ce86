"""Run the real DAG with Airflow in-process (``dag.test()``) on a SQLite metadata DB.

The parent (:mod:`app.local.trigger`) starts this module in a child process with
Airflow's environment set, because Airflow reads its configuration when it is first
imported. Usage: ``python -m app.local.airflow_run '<run conf JSON>' <events fd> <parent pid>``.

The child hands its parent data, not log text: an Airflow listener (the supported
hook for task state changes) writes one JSON line per finished task to the events
pipe, with a failed task's project error as class, message and location, and the
last line is the run's result. Airflow's own logs go to stdout, for people.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from airflow.listeners import hookimpl

from app.core.lifetime import die_with

DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
DAG_FILE = DAGS_DIR / "fraud_training.py"


def _error_data(error: BaseException | str | None) -> dict[str, Any]:
    """The project error behind a task failure (Airflow may wrap it), as data."""
    from app.core.errors import FraudMlopsError

    if not isinstance(error, BaseException):
        return {"error_class": "Exception", "message": str(error or ""), "location": None}
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, FraudMlopsError):
            return seen.to_dict()
        seen = seen.__cause__
    return {"error_class": type(error).__name__, "message": str(error), "location": None}


class TaskEvents:
    """An Airflow listener that reports each task's end on the events pipe."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def emit(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        # "Started" is what a watcher (and the fault-injection test) keys on.
        self.emit({"event": "task", "task_id": task_instance.task_id, "state": "running"})

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self.emit({"event": "task", "task_id": task_instance.task_id, "state": "success"})

    @hookimpl
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        self.emit({"event": "task", "task_id": task_instance.task_id, "state": "skipped"})

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        # Also called before a retry; the parent keeps the last word per task.
        self.emit(
            {
                "event": "task",
                "task_id": task_instance.task_id,
                "state": "failed",
                "failure": {"task": task_instance.task_id, **_error_data(error)},
            }
        )


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        # A trigger killed mid-run has its event handed back and run again; a run left
        # going on its own would race that redelivery.
        die_with(int(argv[2]))
    conf = json.loads(argv[0])
    out = os.fdopen(int(argv[1]), "w")
    spec = importlib.util.spec_from_file_location("fraud_training_dag", DAG_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the DAG file {DAG_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG
    from airflow.sdk.listener import get_listener_manager

    events = TaskEvents(out)
    get_listener_manager().add_listener(events)
    dag = next(v for v in vars(module).values() if isinstance(v, DAG))
    run = dag.test(run_conf=conf)
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    events.emit({"event": "result", "run_id": run.run_id, "state": str(run.state), "tasks": tasks})
    out.close()
    return 0 if str(run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
