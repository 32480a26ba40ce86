"""The AutoML graph's own steps, called through ``.python_func`` on a synthetic snapshot.

Google's components (dataset, training, batch prediction) are not run here: the batch
prediction's output is written as Vertex AI writes it (JSONL files in a directory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics

from app.core.config import (
    RuntimeConfig,
    VertexEndpointConfig,
    VertexModelRegistryConfig,
    VertexPipelineConfig,
)
from app.core.errors import ConfigError, InvalidInputError
from app.core.model.evaluate import evaluate_scores
from app.core.model.features import labels
from app.core.model.split import time_split
from app.core.model.threshold import max_f1_threshold
from app.core.records import SnapshotInfo
from app.core.schema import MODEL_FEATURES
from app.core.step_report import STEP_REPORT_DIR_ENV, read_reports
from app.pipeline.steps.adopt_model import adopt_model
from app.pipeline.steps.build_dataset import build_dataset
from app.pipeline.steps.evaluate_predictions import evaluate_predictions
from app.pipeline.steps.export_automl_dataset import export_automl_dataset
from app.pipeline.steps.vertex_settings import vertex_settings
from tests.pipeline.steps.conftest import artifact

DIGEST = "us-central1-docker.pkg.dev/p/r/trainer@sha256:" + "a" * 64
AUTOML_MODEL = "projects/p/locations/us-central1/models/4242"


def vertex_cfg(base: RuntimeConfig, **pipeline: Any) -> RuntimeConfig:
    """``base`` with the Vertex pipeline, registry and endpoint the automl trainer needs."""
    settings: dict[str, Any] = {
        "project": "p",
        "location": "europe-west4",
        "pipeline_root": "gs://root-bucket/runs/",
        "template_uri": "gs://root-bucket/templates/automl.yaml",
        "service_account": "pipelines@p.iam.gserviceaccount.com",
        "trainer": "automl",
        "trainer_image": DIGEST,
        "automl_budget_milli_node_hours": 2000,
        **pipeline,
    }
    cfg = base.model_copy(
        update={
            "pipeline": VertexPipelineConfig(**settings),
            "registry": VertexModelRegistryConfig(
                project="p",
                location="europe-west4",
                model_id="fraud",
                model_display_name="fraud-model",
                artifact_root="gs://models-bucket/versions",
                serving_image=DIGEST,
            ),
            "endpoint": VertexEndpointConfig(
                project="p", location="europe-west4", endpoint_id="123"
            ),
        }
    )
    # Through JSON, as the step gets it: the whole config is validated again.
    return RuntimeConfig.from_json(cfg.to_json())


@pytest.fixture(scope="module")
def data(step_home: Path, step_cfg: RuntimeConfig, snapshot: SnapshotInfo) -> dict[str, Dataset]:
    parts = {
        name: artifact(Dataset, step_home / name) for name in ("train", "validation", "holdout")
    }
    build_dataset.python_func(
        config_json=step_cfg.to_json(), snapshot_id=snapshot.snapshot_id, **parts
    )
    return parts


@pytest.fixture(scope="module")
def exported(step_home: Path, step_cfg: RuntimeConfig, data: dict[str, Dataset]) -> dict[str, Any]:
    training_table = artifact(Dataset, step_home / "automl" / "training_table")
    prediction_rows = artifact(Dataset, step_home / "automl" / "prediction_rows")
    # On Vertex AI an artifact's uri is gs:// and its path the /gcs/ mount of it.
    training_table.uri = "gs://root-bucket/runs/export/training_table"
    prediction_rows.uri = "gs://root-bucket/runs/export/prediction_rows/"
    outputs = export_automl_dataset.python_func(
        config_json=step_cfg.to_json(),
        training_table=training_table,
        prediction_rows=prediction_rows,
        **data,
    )
    # The files sit in the artifacts' directories under the names the URIs end with.
    training_file = outputs.training_uri.rpartition("/")[2]
    prediction_file = outputs.prediction_uris[0].rpartition("/")[2]
    return {
        "outputs": outputs,
        "training": pd.read_csv(Path(training_table.path) / training_file),
        "predict": pd.read_csv(Path(prediction_rows.path) / prediction_file),
        "training_table": training_table,
    }


def frames(data: dict[str, Dataset]) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(a.path) for name, a in data.items()}


def test_export_automl_dataset_split_column_is_time_split_of_the_train_rows_row_for_row(
    exported: dict[str, Any], data: dict[str, Dataset], step_cfg: RuntimeConfig
) -> None:
    train = frames(data)["train"]
    table = exported["training"]
    inner = time_split(
        train,
        holdout_fraction=step_cfg.training.holdout_fraction,
        validation_fraction=step_cfg.training.validation_fraction,
    )
    expected = (
        ["training"] * len(inner.train)
        + ["validation"] * len(inner.validation)
        + ["test"] * len(inner.holdout)
    )

    assert list(table.columns) == [*MODEL_FEATURES, "label", "split"]
    assert table["split"].tolist() == expected
    # Exactly build_dataset's train rows, in time order: no validation or holdout row.
    expected_rows = pd.concat([inner.train, inner.validation, inner.holdout], ignore_index=True)
    pd.testing.assert_frame_equal(
        table[list(MODEL_FEATURES)],
        expected_rows[list(MODEL_FEATURES)].astype(table[list(MODEL_FEATURES)].dtypes),
        check_exact=False,
        rtol=1e-12,
    )
    assert table["label"].tolist() == labels(expected_rows).tolist()
    assert exported["training_table"].metadata["test_rows"] == len(inner.holdout)


def test_export_automl_dataset_prediction_rows_are_validation_then_holdout_without_label(
    exported: dict[str, Any], data: dict[str, Dataset]
) -> None:
    parts = frames(data)
    predict = exported["predict"]

    assert list(predict.columns) == ["row_id", *MODEL_FEATURES]
    for name in ("validation", "holdout"):
        rows = predict[predict["row_id"].str.startswith(f"{name}-")].reset_index(drop=True)
        assert rows["row_id"].tolist() == [f"{name}-{i}" for i in range(len(parts[name]))]
        pd.testing.assert_frame_equal(
            rows[list(MODEL_FEATURES)],
            parts[name][list(MODEL_FEATURES)].astype(rows[list(MODEL_FEATURES)].dtypes),
            check_exact=False,
            rtol=1e-12,
        )
    assert len(predict) == len(parts["validation"]) + len(parts["holdout"])


def test_export_automl_dataset_returns_gs_uris_of_the_files_and_its_column_names(
    exported: dict[str, Any],
) -> None:
    training_uri, prediction_uris, target, split = exported["outputs"]

    assert training_uri == "gs://root-bucket/runs/export/training_table/automl_training.csv"
    assert prediction_uris == [
        "gs://root-bucket/runs/export/prediction_rows/automl_prediction_rows.csv"
    ]
    assert (target, split) == ("label", "split")


def fake_scores(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Scores with signal and noise, as a model would give (not a perfect ranking)."""
    rng = np.random.default_rng(seed)
    return np.clip(0.6 * labels(frame) + rng.normal(0.2, 0.2, len(frame)), 0.0, 1.0)


def write_predictions(directory: Path, rows: list[tuple[str, float]], *, key: bool) -> None:
    """Vertex's JSONL output: shuffled across two files, classes as strings."""
    directory.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(5).permutation(len(rows))
    half = len(rows) // 2
    for number, chunk in enumerate((order[:half], order[half:]), start=1):
        with (directory / f"predictions_{number:05d}.jsonl").open("w") as out:
            for i in chunk:
                rid, score = rows[i]
                head = {"key": rid} if key else {"instance": {"row_id": rid, "V1": "0.5"}}
                prediction = {"classes": ["0", "1"], "scores": [1.0 - score, score]}
                out.write(json.dumps({**head, "prediction": prediction}) + "\n")


def evaluate(step_home: Path, name: str, data: dict[str, Dataset], predictions: Path) -> Any:
    out = step_home / name
    metrics = artifact(Metrics, out / "metrics")
    result = evaluate_predictions.python_func(
        predictions=artifact(Artifact, predictions),
        validation=data["validation"],
        holdout=data["holdout"],
        metrics=metrics,
        classification=artifact(ClassificationMetrics, out / "classification"),
        pr_curve=artifact(HTML, out / "pr_curve.html"),
    )
    return result, metrics, out


@pytest.mark.parametrize("key", [False, True], ids=["instance-row-id", "key-field"])
def test_evaluate_predictions_equals_evaluate_scores_with_the_validation_threshold(
    step_home: Path, data: dict[str, Dataset], key: bool
) -> None:
    parts = frames(data)
    val_scores = fake_scores(parts["validation"], seed=1)
    holdout_scores = fake_scores(parts["holdout"], seed=2)
    rows = [(f"validation-{i}", float(s)) for i, s in enumerate(val_scores)] + [
        (f"holdout-{i}", float(s)) for i, s in enumerate(holdout_scores)
    ]
    write_predictions(step_home / f"predictions-{key}", rows, key=key)

    (auprc, roc_auc, metrics_json, threshold), metrics, out = evaluate(
        step_home, f"evaluated-{key}", data, step_home / f"predictions-{key}"
    )

    expected_threshold = max_f1_threshold(labels(parts["validation"]), val_scores)
    expected = evaluate_scores(labels(parts["holdout"]), holdout_scores, expected_threshold)
    assert threshold == expected_threshold
    assert json.loads(metrics_json) == expected.metrics()
    assert (auprc, roc_auc) == (expected.auprc, expected.roc_auc)
    assert metrics.metadata["auprc"] == expected.auprc
    assert (out / "pr_curve.html").read_text().startswith("<!doctype html>")


def test_evaluate_predictions_missing_row_raises_invalid_input_as_data(
    step_home: Path, data: dict[str, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = frames(data)
    rows = [(f"validation-{i}", 0.5) for i in range(len(parts["validation"]))] + [
        (f"holdout-{i}", 0.5) for i in range(len(parts["holdout"]) - 1)
    ]
    write_predictions(tmp_path / "predictions", rows, key=False)
    monkeypatch.setenv(STEP_REPORT_DIR_ENV, str(tmp_path / "reports"))

    with pytest.raises(InvalidInputError, match="no score for 1 of .* holdout rows"):
        evaluate(tmp_path, "evaluated", data, tmp_path / "predictions")

    _, failure = read_reports(tmp_path / "reports")
    assert failure is not None
    assert (failure.task, failure.error_class) == ("evaluate_predictions", "InvalidInputError")


def test_evaluate_predictions_rows_vertex_could_not_score_raise_invalid_input(
    data: dict[str, Dataset], tmp_path: Path
) -> None:
    write_predictions(tmp_path / "predictions", [("validation-0", 0.5)], key=False)
    (tmp_path / "predictions" / "errors_00001.jsonl").write_text(
        json.dumps({"instance": {"row_id": "holdout-3"}, "error": {"code": 3}}) + "\n"
    )

    with pytest.raises(InvalidInputError, match="batch prediction failed for 1 rows"):
        evaluate(tmp_path, "evaluated", data, tmp_path / "predictions")


def test_vertex_settings_reads_project_location_budget_and_names_from_config(
    step_cfg: RuntimeConfig,
) -> None:
    cfg = vertex_cfg(step_cfg)

    settings = vertex_settings.python_func(
        config_json=cfg.to_json(), snapshot_id="snap_3_abc", run_name="Train 2024.05"
    )

    assert settings.project == "p" and settings.location == "europe-west4"
    assert settings.budget_milli_node_hours == 2000
    assert settings.service_account == "pipelines@p.iam.gserviceaccount.com"
    assert settings.display_name == "fraud-model-automl-Train 2024.05"
    assert settings.labels == {
        "app": "fraud-mlops",
        "trainer": "automl",
        "snapshot_id": "snap_3_abc",
        "run_name": "train-2024-05",
    }
    assert settings.batch_output_prefix == (
        "gs://root-bucket/runs/automl-batch-predictions/train-2024-05"
    )


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("local", "runs only on Vertex AI"),
        ("custom-trainer", "pipeline.trainer is 'custom'"),
    ],
)
def test_vertex_settings_config_automl_cannot_run_on_raises_config_error(
    step_cfg: RuntimeConfig, which: str, message: str
) -> None:
    cfg = step_cfg if which == "local" else vertex_cfg(step_cfg, trainer="custom")

    with pytest.raises(ConfigError, match=message):
        vertex_settings.python_func(config_json=cfg.to_json(), snapshot_id="s", run_name="r")


class _Adopted:
    version = "v0007"


class _Registry:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def adopt(self, **kwargs: Any) -> _Adopted:
        self.calls.append(kwargs)
        return _Adopted()


def automl_model(resource: str | None) -> Artifact:
    metadata = {} if resource is None else {"resourceName": resource}
    return Artifact(name="model", uri=f"https://aiplatform/v1/{resource}", metadata=metadata)


def test_adopt_model_adopts_the_automl_models_resource_with_threshold_metrics_and_framework(
    step_cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = _Registry()

    class FakeBackends:
        def __init__(self, cfg: RuntimeConfig) -> None:
            self.registry = registry

    monkeypatch.setattr("app.backends.Backends", FakeBackends)

    version = adopt_model.python_func(
        config_json=vertex_cfg(step_cfg).to_json(),
        model=automl_model(AUTOML_MODEL),
        snapshot_id="snap_3_abc",
        run_name="run-1",
        threshold=0.42,
        metrics_json=json.dumps({"auprc": 0.7, "roc_auc": 0.95}),
        optimization_objective="maximize-au-prc",
        budget_milli_node_hours=2000,
    )

    assert version == "v0007"
    assert registry.calls == [
        {
            "model_resource": AUTOML_MODEL,
            "snapshot_id": "snap_3_abc",
            "run_name": "run-1",
            "threshold": 0.42,
            "metrics": {"auprc": 0.7, "roc_auc": 0.95},
            "params": {
                "framework": "automl",
                "source_model": AUTOML_MODEL,
                "optimization_objective": "maximize-au-prc",
                "budget_milli_node_hours": 2000,
                "threshold_rule": "max_f1_on_validation",
            },
        }
    ]


def test_adopt_model_artifact_without_resource_name_raises_invalid_input(
    step_cfg: RuntimeConfig,
) -> None:
    with pytest.raises(InvalidInputError, match="names no Vertex model"):
        adopt_model.python_func(
            config_json=vertex_cfg(step_cfg).to_json(),
            model=automl_model(None),
            snapshot_id="s",
            run_name="r",
            threshold=0.5,
            metrics_json="{}",
            optimization_objective="maximize-au-prc",
            budget_milli_node_hours=1000,
        )


def test_adopt_model_local_registry_refuses_with_config_error(step_cfg: RuntimeConfig) -> None:
    with pytest.raises(ConfigError, match="is a Vertex AI model"):
        adopt_model.python_func(
            config_json=step_cfg.to_json(),
            model=automl_model(AUTOML_MODEL),
            snapshot_id="s",
            run_name="r",
            threshold=0.5,
            metrics_json="{}",
            optimization_objective="maximize-au-prc",
            budget_milli_node_hours=1000,
        )
