"""Flow steps on the real local backends (DuckDB, SQLite registry and endpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends import Backends
from app.core import flow
from app.core.config import RuntimeConfig
from app.core.records import PipelineResult


@pytest.fixture
def services(cfg: RuntimeConfig) -> Backends:
    return Backends(cfg)


def _register(services: Backends, model_dir: Path, snapshot_id: str) -> str:
    return services.registry.register(
        artifact_path=model_dir,
        snapshot_id=snapshot_id,
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
    assert result["gate_reason"].startswith("Resumed: v0001")
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
    services.endpoint.deploy(services.registry.get(newer))
    services.lineage.record_training_run(
        PipelineResult("train-2", "snap_0002_bbbb", True, "ok", {"auprc": 0.9}, newer)
    )
    result = flow.train(services, "snap_0001_aaaa")
    assert not result["deployed"] and result["model_version"] is None
    assert "v0002 is newer" in result["gate_reason"]
    deployed = services.endpoint.deployed()
    assert deployed is not None and deployed.version == "v0002"


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
