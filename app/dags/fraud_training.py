"""Continuous training: landed CSV -> raw -> training -> snapshot -> feature view -> pipeline.

Triggered per landed object (locally by the landing trigger, on GCP by the
bucket's object-finalize notification) with the object in the run conf. This
file only wires tasks: the logic is in :mod:`app.core.flow`, and the runtime
config is read when a task runs, never at import.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

DAG_ID = "fraud_training"


def _inputs() -> tuple[Any, Any]:
    from app.core.config import load_config
    from app.core.flow import RunConf

    conf = dict(get_current_context()["dag_run"].conf or {})
    return load_config(), RunConf.parse(conf)


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["fraud-mlops", "training"],
    doc_md=__doc__,
)
def fraud_training() -> None:
    @task.short_circuit
    def check_new_data() -> bool:
        from app.core import flow

        cfg, conf = _inputs()
        return flow.should_process(cfg, conf)

    @task
    def load_raw() -> dict[str, Any]:
        from app.core import flow

        cfg, conf = _inputs()
        return flow.load_raw(cfg, conf)

    @task
    def transform() -> int:
        from app.core import flow

        cfg, _ = _inputs()
        return flow.transform(cfg)

    @task
    def snapshot() -> dict[str, Any]:
        from app.core import flow

        cfg, conf = _inputs()
        return flow.snapshot(cfg, conf)

    @task
    def sync_feature_view(snap: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        cfg, _ = _inputs()
        return flow.sync_feature_view(cfg, snap["snapshot_id"])

    @task
    def run_training_pipeline(snap: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        cfg, conf = _inputs()
        return flow.train(cfg, snap["snapshot_id"], force=conf.force)

    snap = snapshot()
    check_new_data() >> load_raw() >> transform() >> snap
    # TaskFlow hands an XComArg here and the task receives its value at run time.
    sync_feature_view(snap) >> run_training_pipeline(snap)  # type: ignore[arg-type]


fraud_training_dag = fraud_training()
