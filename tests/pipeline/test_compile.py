from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from app.pipeline.compile import LOCAL_TRAINER_IMAGE, compile_pipeline


def _spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    return spec


def test_compile_pipeline_writes_spec_with_its_three_parameters_and_trainer_image(
    tmp_path: Path,
) -> None:
    path = compile_pipeline(tmp_path / "build" / "pipeline.yaml")

    spec = _spec(path)
    executors = spec["deploymentSpec"]["executors"]
    assert spec["pipelineInfo"]["name"] == "fraud-training"
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "config_json",
        "snapshot_id",
        "run_name",
    }
    assert {e["container"]["image"] for e in executors.values()} == {LOCAL_TRAINER_IMAGE}
    assert len(executors) == 7
    assert "pip install" not in path.read_text()


def test_compile_pipeline_register_and_deploy_sit_under_the_gate_condition(
    tmp_path: Path,
) -> None:
    spec = _spec(compile_pipeline(tmp_path / "pipeline.yaml"))

    components = spec["components"]
    passed = next(
        c for c in components.values() if "register-model" in c.get("dag", {}).get("tasks", {})
    )
    assert set(passed["dag"]["tasks"]) == {"register-model", "deploy-model"}
    assert "register-model" not in spec["root"]["dag"]["tasks"]
    conditions = [
        t["triggerPolicy"]["condition"]
        for c in components.values()
        for t in c.get("dag", {}).get("tasks", {}).values()
        if "triggerPolicy" in t
    ]
    assert any("gate-passed" in c and "== true" in c for c in conditions)


def test_compile_pipeline_deploy_swaps_against_the_gates_champion_and_register_gets_the_run(
    tmp_path: Path,
) -> None:
    spec = _spec(compile_pipeline(tmp_path / "pipeline.yaml"))

    components = spec["components"]
    passed = next(
        c for c in components.values() if "register-model" in c.get("dag", {}).get("tasks", {})
    )
    tasks = passed["dag"]["tasks"]
    deploy = tasks["deploy-model"]["inputs"]["parameters"]
    register = tasks["register-model"]["inputs"]["parameters"]
    # Inside the branch, outer values arrive as the branch's own inputs, named for their source.
    assert deploy["expected_champion"] == {
        "componentInputParameter": "pipelinechannel--gate-champion"
    }
    assert register["run_name"] == {"componentInputParameter": "pipelinechannel--run_name"}
    # At the root, that branch input is the gate's "champion" output.
    root_inputs = spec["root"]["dag"]["tasks"]["condition-branches-1"]["inputs"]["parameters"]
    assert root_inputs["pipelinechannel--gate-champion"] == {
        "taskOutputParameter": {"outputParameterKey": "champion", "producerTask": "gate"}
    }


def test_compile_module_from_another_directory_without_environment_succeeds(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.yaml"

    done = subprocess.run(
        [sys.executable, "-m", "app.pipeline.compile", str(out)],
        cwd=tmp_path,
        env={"PATH": os.defpath},
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert _spec(out)["pipelineInfo"]["name"] == "fraud-training"
