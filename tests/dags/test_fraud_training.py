"""The DAG file parses, reads no config at import, and wires the tasks in order."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from app.core.airflow_local import DAGS_DIR
from app.core.config import CONFIG_ENV


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dag_under_test", DAGS_DIR / "fraud_training.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dag_import_with_broken_config_still_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "{definitely not json")
    dag = _load().fraud_training_dag
    assert dag.dag_id == "fraud_training"
    assert dag.schedule is None or str(dag.timetable.summary) in {"None", ""}


def test_dag_tasks_run_in_flow_order() -> None:
    dag = _load().fraud_training_dag
    assert sorted(dag.task_ids) == sorted(
        [
            "check_new_data",
            "load_raw",
            "transform",
            "snapshot",
            "sync_feature_view",
            "run_training_pipeline",
        ]
    )

    def down(task_id: str) -> set[str]:
        return set(dag.get_task(task_id).downstream_task_ids)

    assert down("check_new_data") == {"load_raw"}
    assert down("load_raw") == {"transform"}
    assert down("transform") == {"snapshot"}
    assert down("snapshot") == {"sync_feature_view", "run_training_pipeline"}
    assert down("sync_feature_view") == {"run_training_pipeline"}
    assert dag.max_active_runs == 1
