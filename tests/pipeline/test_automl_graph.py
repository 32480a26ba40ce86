"""The AutoML trainer's compiled spec: its wiring, images and branches, as Vertex AI reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google_cloud_pipeline_components import __version__ as gcpc_version

from app.pipeline.automl_graph import GCPC_IMAGE, OPTIMIZATION_OBJECTIVE
from app.pipeline.compile import compile_pipeline

DIGEST_IMAGE = "us-central1-docker.pkg.dev/p/r/trainer@sha256:" + "a" * 64
OURS = {
    "vertex-settings",
    "build-dataset",
    "export-automl-dataset",
    "evaluate-predictions",
    "gate",
    "adopt-model",
    "deploy-model",
    "keep-deployed-model",
}
GOOGLES = {"tabular-dataset-create", "automl-tabular-training-job", "model-batch-predict"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("automl") / "automl.yaml"
    compile_pipeline(path, trainer="automl", image=DIGEST_IMAGE)
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    loaded["_text"] = path.read_text()
    return loaded


def all_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task in the graph, branches included, by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def branch_with(spec: dict[str, Any], task: str) -> dict[str, Any]:
    return next(c for c in spec["components"].values() if task in c.get("dag", {}).get("tasks", {}))


def image_of(spec: dict[str, Any], task: dict[str, Any]) -> str:
    component = spec["components"][task["componentRef"]["name"]]
    image: str = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"][
        "image"
    ]
    return image


def params(task: dict[str, Any]) -> dict[str, Any]:
    parameters: dict[str, Any] = task["inputs"]["parameters"]
    return parameters


def from_task(producer: str, key: str) -> dict[str, Any]:
    return {"taskOutputParameter": {"outputParameterKey": key, "producerTask": producer}}


def test_automl_graph_has_exactly_the_three_pipeline_parameters_and_the_training_outputs(
    spec: dict[str, Any],
) -> None:
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "config_json",
        "snapshot_id",
        "run_name",
    }
    assert set(spec["root"]["outputDefinitions"]["parameters"]) == {
        "deployed_version",
        "gate_passed",
        "gate_reason",
        "metrics_json",
    }
    assert spec["pipelineInfo"]["name"] == "fraud-training"


def test_automl_graph_task_set_is_our_steps_and_googles_three_components(
    spec: dict[str, Any],
) -> None:
    leaves = {name for name, t in all_tasks(spec).items() if "executorLabel" in _component(spec, t)}

    assert leaves == OURS | GOOGLES
    assert len(spec["deploymentSpec"]["executors"]) == len(OURS | GOOGLES)


def _component(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    component: dict[str, Any] = spec["components"][task["componentRef"]["name"]]
    return component


def test_automl_graph_our_steps_name_the_digest_and_googles_keep_their_pinned_image(
    spec: dict[str, Any],
) -> None:
    tasks = all_tasks(spec)

    assert {image_of(spec, tasks[name]) for name in OURS} == {DIGEST_IMAGE}
    assert {image_of(spec, tasks[name]) for name in GOOGLES} == {GCPC_IMAGE}
    name, _, tag = GCPC_IMAGE.rpartition(":")
    assert (name, tag) == ("gcr.io/ml-pipeline/google-cloud-pipeline-components", gcpc_version)
    assert gcpc_version == "2.22.0"


def test_automl_graph_executors_install_nothing_at_run_time(spec: dict[str, Any]) -> None:
    commands = " ".join(
        " ".join(e["container"].get("command", []) + e["container"].get("args", []))
        for e in spec["deploymentSpec"]["executors"].values()
    )
    for installer in ("pip install", "-m pip", "ensurepip"):
        assert installer not in spec["_text"] and installer not in commands


def test_automl_graph_our_executors_import_no_step_module(spec: dict[str, Any]) -> None:
    """The executor's kfp.dsl has no ``dsl.component``: a body importing a step module
    (whose ``@trainer_step`` runs at import) fails on Vertex AI and in kfp.local."""
    tasks = all_tasks(spec)
    executors = spec["deploymentSpec"]["executors"]
    for name in OURS:
        label = _component(spec, tasks[name])["executorLabel"]
        container = executors[label]["container"]
        source = " ".join(container.get("command", []) + container.get("args", []))
        assert "app.pipeline" not in source, name


def test_automl_graph_training_job_maximizes_auprc_on_the_exported_split_within_the_budget(
    spec: dict[str, Any],
) -> None:
    job = params(all_tasks(spec)["automl-tabular-training-job"])

    assert OPTIMIZATION_OBJECTIVE == "maximize-au-prc"
    assert job["optimization_objective"] == {"runtimeValue": {"constant": "maximize-au-prc"}}
    assert job["optimization_prediction_type"] == {"runtimeValue": {"constant": "classification"}}
    assert job["target_column"] == from_task("export-automl-dataset", "target_column")
    assert job["predefined_split_column_name"] == from_task("export-automl-dataset", "split_column")
    assert job["budget_milli_node_hours"] == from_task("vertex-settings", "budget_milli_node_hours")
    assert job["project"] == from_task("vertex-settings", "project")
    assert job["location"] == from_task("vertex-settings", "location")
    specs = job["column_specs"]["runtimeValue"]["constant"]
    assert set(specs.values()) == {"numeric"}
    assert "label" not in specs and "split" not in specs and len(specs) == 36


def test_automl_graph_dataset_and_batch_prediction_read_the_exported_files(
    spec: dict[str, Any],
) -> None:
    tasks = all_tasks(spec)
    dataset = params(tasks["tabular-dataset-create"])
    batch = tasks["model-batch-predict"]

    assert dataset["gcs_source"] == from_task("export-automl-dataset", "training_uri")
    assert params(batch)["gcs_source_uris"] == from_task("export-automl-dataset", "prediction_uris")
    assert params(batch)["instances_format"] == {"runtimeValue": {"constant": "csv"}}
    assert params(batch)["predictions_format"] == {"runtimeValue": {"constant": "jsonl"}}
    assert batch["inputs"]["artifacts"]["model"] == {
        "taskOutputArtifact": {
            "outputArtifactKey": "model",
            "producerTask": "automl-tabular-training-job",
        }
    }


def test_automl_graph_evaluation_and_gate_use_build_datasets_validation_and_holdout(
    spec: dict[str, Any],
) -> None:
    tasks = all_tasks(spec)
    evaluated = tasks["evaluate-predictions"]["inputs"]["artifacts"]
    gate = tasks["gate"]["inputs"]

    def artifact_from(producer: str, key: str) -> dict[str, Any]:
        return {"taskOutputArtifact": {"outputArtifactKey": key, "producerTask": producer}}

    assert evaluated["predictions"] == artifact_from("model-batch-predict", "gcs_output_directory")
    assert evaluated["validation"] == artifact_from("build-dataset", "validation")
    assert evaluated["holdout"] == artifact_from("build-dataset", "holdout")
    assert gate["artifacts"]["holdout"] == artifact_from("build-dataset", "holdout")
    assert gate["parameters"]["auprc"] == from_task("evaluate-predictions", "auprc")


def test_automl_graph_adopt_and_deploy_sit_under_gate_passed_and_deploy_swaps_on_gates_champion(
    spec: dict[str, Any],
) -> None:
    passed = branch_with(spec, "adopt-model")
    tasks = passed["dag"]["tasks"]
    root = spec["root"]["dag"]["tasks"]
    branches = root["condition-branches-1"]["inputs"]

    assert set(tasks) == {"adopt-model", "deploy-model"}
    assert "adopt-model" not in root and "deploy-model" not in root
    assert set(branch_with(spec, "keep-deployed-model")["dag"]["tasks"]) == {"keep-deployed-model"}
    conditions = [
        t["triggerPolicy"]["condition"]
        for t in all_tasks(spec).values()
        if "triggerPolicy" in t and "condition" in t["triggerPolicy"]
    ]
    assert any("gate-passed" in c and "== true" in c for c in conditions)
    assert params(tasks["deploy-model"])["expected_champion"] == {
        "componentInputParameter": "pipelinechannel--gate-champion"
    }
    assert params(tasks["deploy-model"])["version"] == from_task("adopt-model", "Output")
    assert branches["parameters"]["pipelinechannel--gate-champion"] == from_task("gate", "champion")
    adopt = tasks["adopt-model"]["inputs"]
    assert adopt["artifacts"]["model"] == {
        "componentInputArtifact": "pipelinechannel--automl-tabular-training-job-model"
    }
    assert branches["parameters"]["pipelinechannel--evaluate-predictions-threshold"] == (
        from_task("evaluate-predictions", "threshold")
    )


def test_automl_graph_gate_adopt_and_deploy_are_never_cached(spec: dict[str, Any]) -> None:
    tasks = all_tasks(spec)

    for name in ("gate", "adopt-model", "deploy-model"):
        assert tasks[name]["cachingOptions"] == {}, name
    assert tasks["automl-tabular-training-job"]["cachingOptions"] == {"enableCache": True}


def test_compile_custom_trainer_task_set_is_unchanged_by_the_automl_graph(tmp_path: Path) -> None:
    custom: dict[str, Any] = yaml.safe_load(
        compile_pipeline(tmp_path / "custom.yaml", trainer="custom", image=DIGEST_IMAGE).read_text()
    )

    assert set(all_tasks(custom)) == {
        "build-dataset",
        "train-model",
        "evaluate-model",
        "gate",
        "register-model",
        "deploy-model",
        "keep-deployed-model",
        "condition-branches-1",
        "condition-2",
        "condition-3",
    }
    images = {e["container"]["image"] for e in custom["deploymentSpec"]["executors"].values()}
    assert images == {DIGEST_IMAGE}
