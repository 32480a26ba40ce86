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


# --- the failure callback: a failed asset-triggered run becomes a dead letter ----------

LANDING = "projects/fraud-mlops-dev/subscriptions/fraud-mlops-dev-landing-dag"
DEAD_TOPIC = "projects/fraud-mlops-dev/topics/fraud-mlops-dev-landing-dead-letters"
NOTIFIED = {
    "bucketId": "fmo-dev-landing",
    "objectId": "day1.csv",
    "objectGeneration": "1733050000123456",
    "eventType": "OBJECT_FINALIZE",
}


def _asset_events(attributes: dict[str, str] | None = None) -> dict[str, list[object]]:
    import base64
    import json

    resource = {"bucket": "fmo-dev-landing", "name": "day1.csv", "generation": "1733050000123456"}
    message = {
        "data": base64.b64encode(json.dumps(resource).encode()).decode(),
        "attributes": {**NOTIFIED, "payloadFormat": "JSON_API_V1", **(attributes or {})},
        "message_id": "17",
    }
    event = SimpleNamespace(
        extra={"payload": {"status": "success", "message": [{"ack_id": "a", "message": message}]}}
    )
    return {"fraud-mlops-landing": [event]}


class _TaskInstance:
    """The failed task's instance, as the DAG callback's context holds it."""

    def __init__(self, task_id: str, recorded: object = None) -> None:
        self.task_id = task_id
        self.recorded = recorded
        self.pulls: list[dict[str, object]] = []
        self.pushed: dict[str, object] = {}

    def xcom_pull(self, **kwargs: object) -> object:
        self.pulls.append(kwargs)
        if isinstance(self.recorded, BaseException):
            raise self.recorded
        return self.recorded

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def _context(
    conf: dict[str, object] | None = None,
    *,
    ti: _TaskInstance | None = None,
    events: dict[str, list[object]] | None = None,
) -> dict[str, object]:
    return {
        "dag_run": SimpleNamespace(conf=conf or {}, run_id="asset_triggered__2026-01-01"),
        "run_id": "asset_triggered__2026-01-01",
        "reason": "task_failure",
        "ti": ti,
        "triggering_asset_events": _asset_events() if events is None else events,
    }


@pytest.fixture
def publisher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """The GCP landing config (the other roles stay local, unused) and a recording
    Pub/Sub publisher in place of the real client."""
    from google.pubsub_v1 import types

    from app.backends.gcp import pubsub_landing_events
    from app.core.config import GcsLandingConfig
    from tests.support.recording import RecordingClient

    landing = GcsLandingConfig(
        bucket="fmo-dev-landing",
        subscription=LANDING,
        topic="projects/fraud-mlops-dev/topics/fraud-mlops-dev-landing",
        dead_letter_topic=DEAD_TOPIC,
        dead_letter_subscription=f"{LANDING}-dead-letters",
    )
    cfg = RuntimeConfig.local(tmp_path / "home").model_copy(update={"landing": landing})
    monkeypatch.setenv(CONFIG_ENV, cfg.to_json())
    client = RecordingClient(answers={"publish": types.PublishResponse(message_ids=["dl-9"])})
    monkeypatch.setattr(pubsub_landing_events, "PublisherClient", lambda: client)

    def no_subscriber() -> None:
        raise AssertionError("dead-lettering needs no subscriber call")

    monkeypatch.setattr(pubsub_landing_events, "SubscriberClient", no_subscriber)
    return client


def _published(client: object) -> list[dict[str, object]]:
    return [c.request for c in client.calls if c.method == "publish"]  # type: ignore[attr-defined]


def test_dag_failure_callback_is_dead_letter_failed_run() -> None:
    module = _load()
    callbacks = module.fraud_training_dag.on_failure_callback
    assert module.dead_letter_failed_run in (
        callbacks if isinstance(callbacks, list) else [callbacks]
    )


def test_dead_letter_failed_run_asset_triggered_publishes_the_recorded_reason(
    publisher: object,
) -> None:
    module = _load()
    recorded = {
        "task": "load_raw",
        "error_class": "InvalidInputError",
        "message": "is not a number",
        "location": "day1.csv:3:4",
    }
    ti = _TaskInstance("load_raw", recorded)

    module.dead_letter_failed_run(_context(ti=ti))

    assert ti.pulls == [{"task_ids": "load_raw", "key": module.FAILURE_XCOM}]
    (request,) = _published(publisher)
    attributes = request["messages"][0].pop("attributes")  # type: ignore[index]
    assert attributes.pop("deadLetterAt")
    assert request == {"topic": DEAD_TOPIC, "messages": [{"data": b""}]}
    # The notification as GCS writes its attributes: `retry` republishes exactly this.
    assert attributes == {
        **NOTIFIED,
        "payloadFormat": "NONE",
        "deadLetterTask": "load_raw",
        "deadLetterErrorClass": "InvalidInputError",
        "deadLetterMessage": "is not a number",
        "deadLetterLocation": "day1.csv:3:4",
        "deadLetterDeliveryAttempts": "1",
    }


def test_dead_letter_failed_run_without_a_recorded_error_names_the_failed_task(
    publisher: object,
) -> None:
    ti = _TaskInstance("run_training_pipeline", RuntimeError("XCom unreachable"))

    _load().dead_letter_failed_run(_context(ti=ti))

    (request,) = _published(publisher)
    attributes = request["messages"][0]["attributes"]  # type: ignore[index]
    assert attributes["deadLetterTask"] == "run_training_pipeline"
    assert attributes["deadLetterErrorClass"] == "DagRunFailed"
    assert "asset_triggered__2026-01-01" in attributes["deadLetterMessage"]


def test_dead_letter_failed_run_with_a_conf_is_a_no_op(publisher: object) -> None:
    # The local trigger (and a run by hand) passes a conf: its trigger settles the claim.
    ti = _TaskInstance("load_raw", {"task": "load_raw", "error_class": "X", "message": "m"})

    _load().dead_letter_failed_run(_context({"object_name": "day1.csv", "uri": "u"}, ti=ti))

    assert publisher.calls == [] and ti.pulls == []  # type: ignore[attr-defined]


def test_dead_letter_failed_run_without_an_asset_event_is_a_no_op(publisher: object) -> None:
    module = _load()

    module.dead_letter_failed_run(_context(ti=_TaskInstance("load_raw"), events={}))

    assert publisher.calls == []  # type: ignore[attr-defined]


def test_dead_letter_failed_run_called_back_without_the_run_logs_an_error(
    publisher: object, caplog: pytest.LogCaptureFixture
) -> None:
    # Airflow's minimal context, when the failed task is gone: the acked event is lost,
    # so the log must say which run.
    with caplog.at_level("ERROR"):
        _load().dead_letter_failed_run({"dag": None, "run_id": "r-7", "reason": "task_failure"})

    assert publisher.calls == []  # type: ignore[attr-defined]
    assert "DAG run r-7 failed" in caplog.text and "not dead-lettered" in caplog.text


def test_dead_letter_failed_run_message_naming_no_object_is_logged_not_published(
    publisher: object, caplog: pytest.LogCaptureFixture
) -> None:
    events = _asset_events({"eventType": "OBJECT_DELETE"})

    _load().dead_letter_failed_run(_context(ti=_TaskInstance("check_new_data"), events=events))

    assert publisher.calls == []  # type: ignore[attr-defined]
    assert "names no object" in caplog.text


def test_call_failure_is_recorded_for_the_failure_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from app.core.errors import InvalidInputError

    module = _load()
    ti = _TaskInstance("load_raw")
    monkeypatch.setattr(module, "get_current_context", lambda: {"ti": ti})

    def bad_file() -> None:
        raise InvalidInputError("bad cell", location="day1.csv:3:4")

    def crashed() -> None:
        raise KeyError("column")

    with pytest.raises(AirflowFailException):
        module._call(bad_file)
    assert ti.pushed == {
        module.FAILURE_XCOM: {
            "task": "load_raw",
            "error_class": "InvalidInputError",
            "message": "bad cell",
            "location": "day1.csv:3:4",
        }
    }
    with pytest.raises(KeyError):
        module._call(crashed)
    assert ti.pushed[module.FAILURE_XCOM] == {
        "task": "load_raw",
        "error_class": "KeyError",
        "message": "'column'",
        "location": None,
    }
