"""The compiled pipeline on kfp.local: real DuckDB, LightGBM, SQLite, one subprocess per step."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.backends import Backends
from app.backends.local.kfp_local_runner import KfpLocalPipelineRunner
from app.backends.local.sqlite_endpoint import SQLiteModelEndpoint
from app.backends.local.sqlite_registry import SQLiteModelRegistry
from app.core.config import GateConfig, KfpLocalPipelineConfig, RuntimeConfig, TrainingConfig
from app.core.errors import ConfigError, InvalidInputError, PipelineFailedError
from app.core.records import PipelineResult, RunFailure
from app.core.schema import MODEL_FEATURES
from app.pipeline.compile import compile_pipeline
from tests.pipeline.snapshots import load_snapshot
from tests.support.synthetic import synthetic_training_frame

# Nothing but "no worse than the champion" can reject this candidate.
ONLY_REGRESSION = GateConfig(min_auprc=0.0, min_roc_auc=0.0, max_auprc_regression=0.0)
# A deliberately weak learner: ten shallow, tiny steps.
WEAK = TrainingConfig(n_estimators=10, learning_rate=0.001, num_leaves=2, early_stopping_rounds=10)


@dataclass(frozen=True)
class Runs:
    cfg: RuntimeConfig
    snapshot_id: str
    passed: PipelineResult
    rejected: PipelineResult
    deployed_between: str | None


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def _template(cfg: RuntimeConfig) -> Path:
    assert isinstance(cfg.pipeline, KfpLocalPipelineConfig)
    return compile_pipeline(cfg.pipeline.template_path)


def _endpoint(home: Path) -> SQLiteModelEndpoint:
    registry = SQLiteModelRegistry(home / "registry.sqlite", home / "models")
    return SQLiteModelEndpoint(home / "endpoint.sqlite", registry)


@pytest.fixture(scope="module")
def runs(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    cfg = RuntimeConfig.local(home)
    _template(cfg)
    snapshot = load_snapshot(cfg)
    with pytest.MonkeyPatch.context() as patch:
        # Steps must find the app package from any working directory.
        patch.chdir(tmp_path_factory.mktemp("elsewhere"))
        runner = Backends(cfg).pipeline_runner
        passed = runner.run(snapshot_id=snapshot.snapshot_id, run_name="r1")
        deployed = _endpoint(home).deployed()
        weak = cfg.model_copy(update={"gate": ONLY_REGRESSION, "training": WEAK})
        rejected = Backends(weak).pipeline_runner.run(
            snapshot_id=snapshot.snapshot_id, run_name="r2"
        )
    return Runs(cfg, snapshot.snapshot_id, passed, rejected, deployed.version if deployed else None)


def _registry(cfg: RuntimeConfig) -> SQLiteModelRegistry:
    assert cfg.registry.kind == "local"
    return SQLiteModelRegistry(cfg.registry.path, cfg.registry.artifacts_dir)


@pytest.mark.slow
def test_run_gate_passed_registers_and_deploys_v0001(runs: Runs) -> None:
    result = runs.passed

    assert result.deployed is True
    assert result.model_version == "v0001"
    assert result.run_name == "r1"
    assert result.snapshot_id == runs.snapshot_id
    assert result.gate_reason.startswith("Passed: AUPRC 0.9")
    assert result.gate_reason.endswith("no model is deployed yet.")
    assert runs.deployed_between == "v0001"
    version = _registry(runs.cfg).get("v0001")
    assert version.snapshot_id == runs.snapshot_id
    assert version.run_name == "r1"  # the run's name reached the register step
    assert version.metrics["auprc"] == result.metrics["auprc"]
    # Each step reported its end as data; the rejected branch's step never ran.
    assert dict(result.steps) == {
        step: "succeeded"
        for step in (
            "build_dataset",
            "train_model",
            "evaluate_model",
            "gate",
            "register_model",
            "deploy_model",
        )
    }


@pytest.mark.slow
def test_run_metrics_show_auprc_far_above_the_fraud_rate(runs: Runs) -> None:
    metrics = runs.passed.metrics

    assert set(metrics) >= {"auprc", "roc_auc", "precision", "recall", "f1", "threshold"}
    assert metrics["fraud_rate"] < 0.05
    assert metrics["auprc"] > 0.8
    assert metrics["roc_auc"] > 0.95
    assert metrics["rows"] == 1000.0  # holdout_fraction 0.2 of 5000


@pytest.mark.slow
def test_run_gate_rejected_for_regression_keeps_pointer_and_skips_register(
    runs: Runs, home: Path
) -> None:
    result = runs.rejected

    assert result.deployed is False
    assert result.model_version is None
    assert "is worse than deployed v0001's 0.9" in result.gate_reason
    assert result.metrics["auprc"] < runs.passed.metrics["auprc"]
    endpoint = _endpoint(home)
    live = endpoint.deployed()
    assert live is not None and live.version == "v0001"
    assert [d.version for d in endpoint.history()] == ["v0001"]
    assert endpoint.traffic() == {"v0001": 100}
    assert [v.version for v in _registry(runs.cfg).list_versions()] == ["v0001"]
    # The gate-passed branch never ran: no step directory was created for it.
    assert not list((home / "pipeline_root" / "r2").glob("*/register-model"))
    assert list((home / "pipeline_root" / "r2").glob("*/keep-deployed-model"))
    assert result.steps["keep_deployed_model"] == "succeeded"
    assert "register_model" not in result.steps


@pytest.mark.slow
def test_run_deployed_model_scores_through_the_endpoint(runs: Runs, home: Path) -> None:
    row = synthetic_training_frame(10, seed=99).iloc[0]
    features = {name: float(row[name]) for name in MODEL_FEATURES}

    prediction = _endpoint(home).predict(features, routing_key="card-1")

    assert prediction.model_version == "v0001"
    assert prediction.threshold == runs.passed.metrics["threshold"]
    assert 0.0 <= prediction.probability <= 1.0


@pytest.mark.slow
def test_run_writes_pr_curve_html_and_step_log(runs: Runs, home: Path) -> None:
    run_root = home / "pipeline_root" / "r1"

    (pr_curve,) = run_root.glob("*/evaluate-model/pr_curve")
    assert 'src="data:image/png;base64,' in pr_curve.read_text()
    log = re.sub(r"\x1b\[[0-9;]*m", "", (run_root / "run.log").read_text())
    assert "Task 'deploy-model' finished with status SUCCESS" in log


@pytest.mark.slow
def test_run_unknown_snapshot_raises_pipeline_failed_with_the_steps_error_as_data(
    runs: Runs,
) -> None:
    with pytest.raises(PipelineFailedError) as caught:
        Backends(runs.cfg).pipeline_runner.run(snapshot_id="snap_9999_missing", run_name="r3")

    assert caught.value.failure == RunFailure(
        task="build_dataset",
        error_class="NotFoundError",
        message="snapshot 'snap_9999_missing' does not exist",
        location=None,
    )
    assert "training run 'r3' failed at step 'build_dataset'" in str(caught.value)


def test_run_without_a_compiled_template_raises_config_error(tmp_path: Path) -> None:
    runner = Backends(RuntimeConfig.local(tmp_path)).pipeline_runner

    with pytest.raises(ConfigError, match="does not exist; the local platform compiles it"):
        runner.run(snapshot_id="snap_0001_x", run_name="r1")


def test_runner_from_config_is_the_kfp_local_runner(tmp_path: Path) -> None:
    assert isinstance(
        Backends(RuntimeConfig.local(tmp_path)).pipeline_runner, KfpLocalPipelineRunner
    )


def test_run_name_with_a_path_separator_raises_invalid_input(tmp_path: Path) -> None:
    runner = Backends(RuntimeConfig.local(tmp_path)).pipeline_runner

    with pytest.raises(InvalidInputError, match="run name '../escape'"):
        runner.run(snapshot_id="snap_0001_x", run_name="../escape")

    assert not (tmp_path / "escape").exists()
