"""Continuous training: landed CSV -> raw -> training -> snapshot -> feature view -> pipeline.

Triggered per landed object (locally by the landing trigger, on GCP by the
bucket's object-finalize notification) with the object in the run conf. This
file only wires tasks: the logic is in :mod:`app.core.flow`, the roles come from
:class:`app.backends.Backends`, and the runtime config is read when a task runs,
never at import.

Every task is idempotent (the same conf twice changes nothing), so Airflow may retry
any of them: a retry after a transient failure (a locked file, a store that did not
answer) finishes the work instead of failing the run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pendulum
from airflow.sdk import dag, get_current_context, task

DAG_ID = "fraud_training"

DEFAULT_ARGS: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    # Every task has a limit; the pipeline's own is longer (it trains).
    "execution_timeout": timedelta(minutes=20),
}
# Timeouts per task, sized for the Kaggle file (284,807 rows) with room to spare.
TIMEOUTS: dict[str, timedelta] = {
    "check_new_data": timedelta(minutes=2),
    "load_raw": timedelta(minutes=20),
    "transform": timedelta(minutes=20),
    "snapshot": timedelta(minutes=10),
    "sync_feature_view": timedelta(minutes=30),
    "run_training_pipeline": timedelta(hours=3),
}


T = TypeVar("T")


def _call(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a flow step; an error that a retry cannot heal fails the task at once.

    A bad file or a bad config fails the same way every time, so it skips the
    retries; a store that did not answer (``retryable``) is retried by Airflow.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from app.core.errors import FraudMlopsError

    try:
        return step(*args, **kwargs)
    except FraudMlopsError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(str(exc)) from exc


def _inputs() -> tuple[Any, Any]:
    from app.backends import Backends
    from app.core.config import load_config
    from app.core.flow import RunConf

    conf = dict(get_current_context()["dag_run"].conf or {})
    return Backends(load_config()), RunConf.parse(conf)


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["fraud-mlops", "training"],
    doc_md=__doc__,
)
def fraud_training() -> None:
    @task.short_circuit(execution_timeout=TIMEOUTS["check_new_data"])
    def check_new_data() -> bool:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.should_process, services, conf)

    @task(execution_timeout=TIMEOUTS["load_raw"])
    def load_raw() -> dict[str, Any]:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.load_raw, services, conf)

    @task(execution_timeout=TIMEOUTS["transform"])
    def transform() -> int:
        from app.core import flow

        services, _ = _call(_inputs)
        return _call(flow.transform, services)

    @task(execution_timeout=TIMEOUTS["snapshot"])
    def snapshot() -> dict[str, Any]:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.snapshot, services, conf)

    @task(execution_timeout=TIMEOUTS["sync_feature_view"])
    def sync_feature_view(snap: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        services, _ = _call(_inputs)
        return _call(flow.sync_feature_view, services, snap["snapshot_id"])

    @task(execution_timeout=TIMEOUTS["run_training_pipeline"])
    def run_training_pipeline(snap: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.train, services, snap["snapshot_id"], force=conf.force)

    snap = snapshot()
    check_new_data() >> load_raw() >> transform() >> snap
    # TaskFlow hands an XComArg here and the task receives its value at run time.
    sync_feature_view(snap) >> run_training_pipeline(snap)  # type: ignore[arg-type]


fraud_training_dag = fraud_training()
