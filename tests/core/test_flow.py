"""Flow steps on the real local backends (DuckDB, SQLite registry and endpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends import Backends
from app.core import flow
from app.core.config import LocalEndpointConfig, RuntimeConfig
from app.core.records import LandedObject, PipelineResult, RunFailure


@pytest.fixture
def services(cfg: RuntimeConfig) -> Backends:
    return Backends(cfg)


def _register(services: Backends, model_dir: Path, snapshot_id: str) -> str:
    return services.registry.register(
        artifact_path=model_dir,
        snapshot_id=snapshot_id,
        run_name=f"train-{snapshot_id}".replace("_", "-"),
        threshold=0.5,
        metrics={"auprc": 0.8},
        params={},
    ).version


def test_train_after_crash_between_register_and_record_deploys_instead_of_retraining(
    services: Backends, model_dirs: tuple[Path, Path]
) -> None:
    _register(services, model_dirs[0], "snap_0001_aaaa")
    # No such snapshot in the warehouse: a pipeline run would fail, so success means resumed.
    result = flow.train(services, "snap_0001_aaaa")
    assert result["deployed"] and result["model_version"] == "v0001"
    assert result["gate_reason"].startswith(
        "Resumed: v0001 was registered for this snapshot by run train-snap-0001-aaaa"
    )
    deployed = services.endpoint.deployed()
    assert deployed is not None and deployed.version == "v0001"
    assert [v.version for v in services.registry.list_versions()] == ["v0001"]
    again = flow.train(services, "snap_0001_aaaa")
    assert again["skipped"] and again["model_version"] == "v0001"


def test_train_resume_never_replaces_a_newer_live_model(
    services: Backends, model_dirs: tuple[Path, Path]
) -> None:
    _register(services, model_dirs[0], "snap_0001_aaaa")
    newer = _register(services, model_dirs[1], "snap_0002_bbbb")
    services.endpoint.deploy(services.registry.get(newer), expected_champion=None)
    services.lineage.record_training_run(
        PipelineResult("train-2", "snap_0002_bbbb", True, "ok", {"auprc": 0.9}, newer)
    )
    result = flow.train(services, "snap_0001_aaaa")
    assert not result["deployed"] and result["model_version"] is None
    assert "v0002 is newer" in result["gate_reason"]
    deployed = services.endpoint.deployed()
    assert deployed is not None and deployed.version == "v0002"


def test_train_resume_with_a_canary_share_deploys_the_version_as_canary_once(
    cfg: RuntimeConfig, model_dirs: tuple[Path, Path]
) -> None:
    assert isinstance(cfg.endpoint, LocalEndpointConfig)
    canary = cfg.model_copy(
        update={"endpoint": cfg.endpoint.model_copy(update={"canary_traffic_percent": 30})}
    )
    services = Backends(canary)
    champion = _register(services, model_dirs[0], "snap_0001_aaaa")
    services.endpoint.deploy(services.registry.get(champion), expected_champion=None)
    services.lineage.record_training_run(
        PipelineResult("train-1", "snap_0001_aaaa", True, "ok", {"auprc": 0.8}, champion)
    )
    _register(services, model_dirs[1], "snap_0002_bbbb")

    result = flow.train(services, "snap_0002_bbbb")

    assert result["deployed"] and result["model_version"] == "v0002"
    assert result["gate_reason"].endswith("it is deployed (30% of traffic).")
    assert services.endpoint.traffic() == {"v0001": 70, "v0002": 30}
    # The same attempt resumed again (its record lost once more) leaves the split alone.
    history = len(services.endpoint.history())  # type: ignore[attr-defined]
    assert flow._resume(services, "snap_0002_bbbb") is not None
    assert services.endpoint.traffic() == {"v0001": 70, "v0002": 30}
    assert len(services.endpoint.history()) == history  # type: ignore[attr-defined]


def test_flow_object_announced_without_a_hash_loads_once_per_generation(
    services: Backends, small_csv: Path
) -> None:
    """A GCS notification names bucket, object and generation, never a SHA-256."""
    landed = services.landing.land(small_csv, name="day1.csv")
    conf = flow.RunConf(object_name="day1.csv", uri=landed.uri, generation=7)

    assert flow.should_process(services, conf)
    loaded = flow.load_raw(services, conf)
    assert loaded["content_hash"] == landed.content_hash  # computed while parsing
    assert loaded["rows_loaded"] == 3000
    flow.transform(services)
    snap = flow.snapshot(services, conf, loaded)
    services.lineage.record_training_run(
        PipelineResult("train-1", snap["snapshot_id"], False, "no", {}, None)
    )
    # The same message redelivered: nothing to do, decided without reading the object.
    assert not flow.should_process(services, conf)
    # The same bytes as another generation load nothing new either (content decides).
    again = flow.load_raw(services, conf.model_copy(update={"generation": 8}))
    assert (again["rows_loaded"], again["already_loaded"]) == (0, True)


class _Events:
    """The one LandingEvents call the failure path makes, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[LandedObject, RunFailure]] = []

    def dead_letter_landed(self, landed: LandedObject, *, reason: RunFailure) -> str:
        self.calls.append((landed, reason))
        return "dl-1"


class _Services:
    def __init__(self) -> None:
        self.landing_events = _Events()


CONF = flow.RunConf(object_name="day1.csv", uri="gs://landing/day1.csv", generation=1712)


def test_dead_letter_failed_run_with_recorded_failure_keeps_it() -> None:
    services = _Services()
    failure = RunFailure("load_raw", "InvalidInputError", "is not a number", "day1.csv:3:4")

    event_id = flow.dead_letter_failed_run(
        services,  # type: ignore[arg-type]
        CONF,
        run_id="asset_triggered__1",
        failed_task="load_raw",
        failure=failure,
    )

    assert event_id == "dl-1"
    assert services.landing_events.calls == [
        (LandedObject("day1.csv", "gs://landing/day1.csv", generation=1712), failure)
    ]


def test_dead_letter_failed_run_without_recorded_failure_names_the_run_and_task() -> None:
    services = _Services()

    flow.dead_letter_failed_run(
        services,  # type: ignore[arg-type]
        CONF,
        run_id="asset_triggered__1",
        failed_task="run_training_pipeline",
    )

    ((_, reason),) = services.landing_events.calls
    assert reason == RunFailure(
        task="run_training_pipeline",
        error_class="DagRunFailed",
        message="DAG run asset_triggered__1 failed in task run_training_pipeline after its "
        "retries; the task's log has the error",
    )
