"""The images' digests flow from the build to the runtime config and into the template
Vertex AI runs: the whole program on the real tree, building its own images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from app.core.config import RuntimeConfig
from app.pipeline.steps import TRAINER_IMAGE_PLACEHOLDER
from stacks import program
from stacks.config import NAMESPACE
from stacks.mocks import MockRun, run_with_mocks
from stacks.plan import stack_config
from tests.infra.conftest import ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> MockRun:
    build_dir = tmp_path_factory.mktemp("build")
    patch = pytest.MonkeyPatch()
    patch.setattr(program, "BUILD_DIR", build_dir)
    try:
        values = stack_config(ROOT, "dev")
        assert not values.get(f"{NAMESPACE}:images.trainer")
        return run_with_mocks(
            lambda: program.main(ROOT), project=NAMESPACE, stack="dev", config=values
        )
    finally:
        patch.undo()


def _pushed_ref(run: MockRun, name: str) -> str:
    (image,) = [r for r in run.of_type("docker-build:index:Image") if r.name == f"images-{name}"]
    (tag,) = image.inputs["tags"]
    # What the mock registry answers for a push of that tag (stacks/mocks.py).
    digest = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
    return f"{tag.rsplit(':', 1)[0]}@{digest}"


def _config(run: MockRun) -> RuntimeConfig:
    return RuntimeConfig.model_validate(run.outputs["runtimeConfig"])


def test_program_builds_both_images_into_the_stacks_repository(built: MockRun) -> None:
    for name in ("trainer", "serving"):
        ref = _pushed_ref(built, name)
        assert ref.startswith(
            f"us-central1-docker.pkg.dev/fraud-mlops-dev/fraud-mlops-dev-images/{name}@sha256:"
        )


def test_program_runtime_config_names_the_pushed_digests(built: MockRun) -> None:
    cfg = _config(built)

    assert cfg.pipeline.trainer_image == _pushed_ref(built, "trainer")  # type: ignore[union-attr]
    assert cfg.registry.serving_image == _pushed_ref(built, "serving")  # type: ignore[union-attr]
    assert built.outputs["trainerImage"] == cfg.pipeline.trainer_image  # type: ignore[union-attr]


def test_program_uploaded_template_runs_every_step_on_the_pushed_trainer(built: MockRun) -> None:
    (template,) = [
        r
        for r in built.of_type("gcp:storage/bucketObject:BucketObject")
        if r.name == "training-pipeline-template"
    ]
    spec = yaml.safe_load(Path(template.inputs["source"].path).read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}

    assert images == {_pushed_ref(built, "trainer")}
    assert TRAINER_IMAGE_PLACEHOLDER not in json.dumps(spec)
    assert _config(built).pipeline.template_uri.endswith("/" + template.inputs["name"])  # type: ignore[union-attr]


def test_program_automl_trainer_uploads_the_automl_template_on_the_trainer_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.infra.conftest import SERVING_REF, TRAINER_REF

    monkeypatch.setattr(program, "BUILD_DIR", tmp_path)
    values = stack_config(ROOT, "dev")
    values[f"{NAMESPACE}:pipeline.trainer"] = "automl"
    values[f"{NAMESPACE}:images.trainer"] = TRAINER_REF
    values[f"{NAMESPACE}:images.serving"] = SERVING_REF

    run = run_with_mocks(lambda: program.main(ROOT), project=NAMESPACE, stack="dev", config=values)

    (template,) = [
        r
        for r in run.of_type("gcp:storage/bucketObject:BucketObject")
        if r.name == "training-pipeline-template"
    ]
    spec = yaml.safe_load(Path(template.inputs["source"].path).read_text())
    executors = spec["deploymentSpec"]["executors"].values()
    ours = {e["container"]["image"] for e in executors if "pipeline-components" not in str(e)}
    assert ours == {TRAINER_REF}
    assert "automl-tabular-training-job" in json.dumps(spec["root"]["dag"]["tasks"])
    assert not run.of_type("docker-build:index:Image")  # prebuilt: nothing is built
    assert _config(run).pipeline.trainer == "automl"  # type: ignore[union-attr]
