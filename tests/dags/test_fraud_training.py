"""The DAG file parses, reads no config at import, wires the tasks in order, and each
task is safe to retry: run twice, it changes nothing the second time."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from app.backends import Backends
from app.core.config import CONFIG_ENV, RuntimeConfig
from app.core.flow import RunConf

DAGS_DIR = Path(__file__).resolve().parents[2] / "app" / "dags"


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
    assert down("load_raw") == {"transform", "snapshot"}  # snapshot reads its result
    assert down("transform") == {"snapshot"}
    assert down("snapshot") == {"sync_feature_view", "run_training_pipeline"}
    assert down("sync_feature_view") == {"run_training_pipeline"}
    assert dag.max_active_runs == 1


def test_dag_every_task_has_retries_and_a_timeout() -> None:
    dag = _load().fraud_training_dag
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_delay.total_seconds() > 0, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout.total_seconds() > 0, task.task_id
    assert (
        dag.get_task("run_training_pipeline").execution_timeout
        > dag.get_task("load_raw").execution_timeout
    )


def test_call_error_a_retry_cannot_heal_fails_the_task_at_once() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from app.core.errors import BackendUnavailableError, InvalidInputError

    module = _load()

    def bad_file() -> None:
        raise InvalidInputError("bad cell", location="day1.csv:3:4")

    def store_down() -> None:
        raise BackendUnavailableError("warehouse locked")

    with pytest.raises(AirflowFailException) as caught:
        module._call(bad_file)
    assert isinstance(caught.value.__cause__, InvalidInputError)
    assert caught.value.__cause__.location == "day1.csv:3:4"
    with pytest.raises(BackendUnavailableError):
        module._call(store_down)


def test_tasks_run_twice_change_nothing_the_second_time(
    tmp_path: Path, small_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = RuntimeConfig.local(tmp_path / "home")
    landed = Backends(cfg).landing.land(small_csv, name="day1.csv")
    conf = RunConf.for_object(landed).model_dump()
    monkeypatch.setenv(CONFIG_ENV, cfg.to_json())
    module = _load()
    # A task run outside a scheduler: the context holds just the run's conf.
    monkeypatch.setattr(
        module, "get_current_context", lambda: {"dag_run": SimpleNamespace(conf=conf)}
    )
    dag = module.fraud_training_dag

    def run(task_id: str, *args: object) -> object:
        return dag.get_task(task_id).python_callable(*args)

    def counts() -> dict[str, int]:
        return Backends(cfg).warehouse.table_counts()

    assert run("check_new_data") is True
    first_load = run("load_raw")
    assert run("load_raw") == {**first_load, "rows_loaded": 0, "already_loaded": True}
    assert run("transform") == run("transform") == 3000
    after_transform = counts()
    snap = run("snapshot", first_load)
    assert run("snapshot", first_load) == snap
    synced = run("sync_feature_view", snap)
    again = run("sync_feature_view", snap)
    assert (synced["skipped"], again["skipped"]) == (False, True)
    assert again["cards"] == synced["cards"]
    assert counts() == {**after_transform, "lineage.snapshots": 1}
    assert counts()["raw.transactions"] == 3000


SUBSCRIPTION = "projects/fraud-mlops-dev/subscriptions/fmo-dev-landing"


def test_dag_with_landing_subscription_watches_it_one_message_per_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_MLOPS_LANDING_SUBSCRIPTION", SUBSCRIPTION)
    module = _load()

    (asset,) = module.landing_schedule()
    (watcher,) = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert asset.name == "fraud-mlops-landing"
    # The google+pubsub scheme resolves to the Google provider's pull trigger.
    assert classpath == "airflow.providers.google.cloud.triggers.pubsub.PubsubPullTrigger"
    assert (kwargs["project_id"], kwargs["subscription"]) == ("fraud-mlops-dev", "fmo-dev-landing")
    assert (kwargs["max_messages"], kwargs["ack_messages"]) == (1, True)
    assert type(module.fraud_training_dag.timetable).__name__ == "AssetTriggeredTimetable"


def test_dag_malformed_landing_subscription_is_refused_naming_the_variable() -> None:
    module = _load()
    with pytest.raises(ValueError, match="FRAUD_MLOPS_LANDING_SUBSCRIPTION"):
        module.landing_schedule({"FRAUD_MLOPS_LANDING_SUBSCRIPTION": "fmo-dev-landing"})


def test_conf_from_asset_events_reads_the_gcs_notification() -> None:
    import base64
    import json

    resource = {"bucket": "fmo-dev-landing", "name": "day1.csv", "generation": "1733050000123456"}
    message = {
        "data": base64.b64encode(json.dumps(resource).encode()).decode(),
        "attributes": {
            "bucketId": "fmo-dev-landing",
            "objectId": "day1.csv",
            "objectGeneration": "1733050000123456",
            "eventType": "OBJECT_FINALIZE",
            "payloadFormat": "JSON_API_V1",
        },
        "message_id": "1",
    }
    event = SimpleNamespace(
        extra={
            "from_trigger": True,
            "payload": {"status": "success", "message": [{"ack_id": "a", "message": message}]},
        }
    )

    conf = _load().conf_from_asset_events({"fraud-mlops-landing": [event]})

    parsed = RunConf.parse(conf)
    assert (parsed.object_name, parsed.generation) == ("day1.csv", 1733050000123456)
    assert parsed.uri == "gs://fmo-dev-landing/day1.csv"
    assert parsed.content_hash is None  # computed while the object is parsed


def test_conf_from_asset_events_without_a_message_is_invalid_input() -> None:
    from app.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="neither a conf nor a landing event"):
        _load().conf_from_asset_events({})
