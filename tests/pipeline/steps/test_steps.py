"""Each KFP step, called through ``.python_func`` in order, as the pipeline chains them.

One module-scoped home: dataset -> train -> evaluate -> gate -> register -> deploy, then
the gate again against the champion it just deployed, and the failure report a step
writes when it fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model

from app.backends import Backends
from app.core.config import GateConfig, LocalEndpointConfig, RuntimeConfig
from app.core.errors import ConflictError, NotFoundError
from app.core.records import SnapshotInfo
from app.core.step_report import STEP_REPORT_DIR_ENV, read_reports
from app.pipeline.steps.build_dataset import build_dataset
from app.pipeline.steps.deploy_model import deploy_model
from app.pipeline.steps.evaluate_model import evaluate_model
from app.pipeline.steps.gate import gate
from app.pipeline.steps.keep_deployed_model import keep_deployed_model
from app.pipeline.steps.register_model import register_model
from app.pipeline.steps.train_model import train_model
from tests.pipeline.steps.conftest import artifact


@pytest.fixture(scope="module")
def outputs(step_home: Path, step_cfg: RuntimeConfig, snapshot: SnapshotInfo) -> dict[str, object]:
    out = step_home / "out"
    cfg_json = step_cfg.to_json()
    data = {name: artifact(Dataset, out / name) for name in ("train", "validation", "holdout")}
    build_dataset.python_func(config_json=cfg_json, snapshot_id=snapshot.snapshot_id, **data)
    model = artifact(Model, out / "model")
    threshold = train_model.python_func(
        config_json=cfg_json, train=data["train"], validation=data["validation"], model=model
    )
    metrics = artifact(Metrics, out / "metrics")
    evaluated = evaluate_model.python_func(
        model=model,
        holdout=data["holdout"],
        metrics=metrics,
        classification=artifact(ClassificationMetrics, out / "classification"),
        pr_curve=artifact(HTML, out / "pr_curve.html"),
    )
    return {"data": data, "model": model, "threshold": threshold, "evaluated": evaluated}


def test_build_dataset_splits_the_snapshot_by_time(
    outputs: dict[str, object], snapshot: SnapshotInfo
) -> None:
    data = outputs["data"]
    assert isinstance(data, dict)
    parts = {name: pd.read_parquet(a.path) for name, a in data.items()}
    assert sum(len(p) for p in parts.values()) == snapshot.row_count == 3000
    assert parts["train"]["event_time"].max() <= parts["validation"]["event_time"].min()
    assert parts["validation"]["event_time"].max() <= parts["holdout"]["event_time"].min()
    assert data["holdout"].metadata["snapshot_id"] == snapshot.snapshot_id
    assert data["holdout"].metadata["rows"] == len(parts["holdout"])


def test_train_model_saves_a_loadable_model_with_its_threshold(outputs: dict[str, object]) -> None:
    model = outputs["model"]
    assert isinstance(model, Model)
    assert (Path(model.path) / "model.txt").is_file()
    assert model.metadata["threshold"] == outputs["threshold"]
    assert 0.0 < float(outputs["threshold"]) < 1.0  # type: ignore[arg-type]


def test_evaluate_model_returns_auprc_first_metrics(outputs: dict[str, object]) -> None:
    auprc, roc_auc, metrics_json = outputs["evaluated"]  # type: ignore[misc]
    metrics = json.loads(metrics_json)
    assert metrics["auprc"] == auprc and metrics["roc_auc"] == roc_auc
    assert auprc > metrics["fraud_rate"]  # far better than guessing at the base rate


def test_gate_register_deploy_then_gate_again_against_the_champion(
    outputs: dict[str, object], step_cfg: RuntimeConfig, snapshot: SnapshotInfo
) -> None:
    auprc, roc_auc, metrics_json = outputs["evaluated"]  # type: ignore[misc]
    holdout = outputs["data"]["holdout"]  # type: ignore[index]
    lenient = step_cfg.model_copy(update={"gate": GateConfig(min_auprc=0.0, min_roc_auc=0.0)})
    passed, reason, champion = gate.python_func(
        config_json=lenient.to_json(), auprc=auprc, roc_auc=roc_auc, holdout=holdout
    )
    assert passed is True and reason.endswith("no model is deployed yet.")
    assert champion == ""

    def register(run_name: str) -> str:
        version: str = register_model.python_func(
            config_json=lenient.to_json(),
            model=outputs["model"],
            snapshot_id=snapshot.snapshot_id,
            run_name=run_name,
            metrics_json=metrics_json,
        )
        return version

    version = register("train-1")
    assert version == "v0001"
    # A retry of the same run's step gets the same version, not a second copy.
    assert register("train-1") == "v0001"
    assert [v.version for v in Backends(step_cfg).registry.list_versions()] == ["v0001"]
    assert (
        deploy_model.python_func(
            config_json=lenient.to_json(), version=version, expected_champion=""
        )
        == version
    )
    live = Backends(step_cfg).endpoint.deployed()
    assert live is not None and live.version == "v0001"

    # The same candidate against the champion it now is: equal AUPRC, no regression.
    passed, reason, champion = gate.python_func(
        config_json=lenient.to_json(), auprc=auprc, roc_auc=roc_auc, holdout=holdout
    )
    assert passed is True and f"deployed v0001 scores AUPRC {auprc:.4f}" in reason
    assert champion == "v0001"
    # A candidate a hair worse than the champion on the same rows is refused.
    passed, reason, _ = gate.python_func(
        config_json=lenient.to_json(), auprc=auprc - 0.01, roc_auc=roc_auc, holdout=holdout
    )
    assert passed is False and "worse than deployed v0001's" in reason


def test_deploy_model_champion_changed_since_the_gate_raises_conflict_as_data(
    outputs: dict[str, object],
    step_cfg: RuntimeConfig,
    snapshot: SnapshotInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runs judged against the same champion: the second deploy must not land."""
    _, _, metrics_json = outputs["evaluated"]  # type: ignore[misc]
    fresh = step_cfg.model_copy(
        update={"endpoint": LocalEndpointConfig(path=tmp_path / "endpoint.sqlite")}
    )
    registered = [
        register_model.python_func(
            config_json=fresh.to_json(),
            model=outputs["model"],
            snapshot_id=snapshot.snapshot_id,
            run_name=run_name,
            metrics_json=metrics_json,
        )
        for run_name in ("run-a", "run-b")
    ]
    monkeypatch.setenv(STEP_REPORT_DIR_ENV, str(tmp_path / "reports"))
    # Both gates saw an empty endpoint; run a deploys first.
    deploy_model.python_func(
        config_json=fresh.to_json(), version=registered[0], expected_champion=""
    )

    with pytest.raises(ConflictError, match=f"champion is {registered[0]}, not nothing"):
        deploy_model.python_func(
            config_json=fresh.to_json(), version=registered[1], expected_champion=""
        )

    assert Backends(fresh).endpoint.traffic() == {registered[0]: 100}
    _, failure = read_reports(tmp_path / "reports")
    assert failure is not None
    assert (failure.task, failure.error_class) == ("deploy_model", "ConflictError")


def test_deploy_model_at_a_canary_share_splits_traffic_with_the_champion(
    outputs: dict[str, object], step_cfg: RuntimeConfig, snapshot: SnapshotInfo, tmp_path: Path
) -> None:
    _, _, metrics_json = outputs["evaluated"]  # type: ignore[misc]
    canary = step_cfg.model_copy(
        update={
            "endpoint": LocalEndpointConfig(
                path=tmp_path / "endpoint.sqlite", canary_traffic_percent=15
            )
        }
    )
    first, second = (
        register_model.python_func(
            config_json=canary.to_json(),
            model=outputs["model"],
            snapshot_id=snapshot.snapshot_id,
            run_name=run_name,
            metrics_json=metrics_json,
        )
        for run_name in ("run-c", "run-d")
    )
    deploy_model.python_func(config_json=canary.to_json(), version=first, expected_champion="")

    deploy_model.python_func(config_json=canary.to_json(), version=second, expected_champion=first)

    assert Backends(canary).endpoint.traffic() == {first: 85, second: 15}


def test_keep_deployed_model_returns_no_version() -> None:
    assert keep_deployed_model.python_func(reason="Rejected: too weak.") == ""


def test_step_failure_writes_its_project_error_as_data(
    step_cfg: RuntimeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STEP_REPORT_DIR_ENV, str(tmp_path / "reports"))
    data = {name: artifact(Dataset, tmp_path / name) for name in ("train", "validation", "holdout")}
    with pytest.raises(NotFoundError):
        build_dataset.python_func(config_json=step_cfg.to_json(), snapshot_id="snap_9_x", **data)
    assert keep_deployed_model.python_func(reason="r") == ""

    states, failure = read_reports(tmp_path / "reports")
    assert states == {"build_dataset": "failed", "keep_deployed_model": "succeeded"}
    assert failure is not None
    assert (failure.task, failure.error_class) == ("build_dataset", "NotFoundError")
    assert failure.message == "snapshot 'snap_9_x' does not exist"
