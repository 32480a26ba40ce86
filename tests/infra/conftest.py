"""Shared helpers for the infrastructure tests: everything runs under Pulumi's
mock engine (``pulumi.runtime.set_mocks``), in-process, without the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from stacks import program
from stacks.config import NAMESPACE
from stacks.mocks import MockRun, Registration, run_with_mocks
from stacks.plan import stack_config

ROOT = Path(__file__).resolve().parents[2]
TEST_PROJECT = "fraud-mlops-test"


TRAINER_REF = f"us-central1-docker.pkg.dev/fraud-mlops-ci/images/trainer@sha256:{'1' * 64}"
SERVING_REF = f"us-central1-docker.pkg.dev/fraud-mlops-ci/images/serving@sha256:{'2' * 64}"


def make_source_tree(root: Path) -> Path:
    """A tiny stand-in for the app: what the function and the DAG import, and
    code only local runs use, which the stack must not upload."""
    files = {
        "app/__init__.py": "",
        "app/core/__init__.py": "",
        "app/core/config.py": "from app.core import sql  # noqa: F401\n\nVALUE = 1\n",
        "app/core/sql/__init__.py": "",
        "app/core/sql/training.sql": "SELECT 1\n",
        "app/function/__init__.py": "",
        "app/function/main.py": (
            "from app.core.config import VALUE\n\n\ndef predict(request):\n    return VALUE\n"
        ),
        "app/dags/__init__.py": "",
        # As the real DAG does: app imports inside the task, not at parse time.
        "app/dags/fraud_training.py": (
            "DAG_ID = 'fraud_training'\n\n\ndef load():\n"
            "    from app.core import config\n\n    return config.VALUE\n"
        ),
        "app/local/__init__.py": "",
        "app/local/server.py": "from app.core.config import VALUE  # noqa: F401\n",
        "app/cli/__init__.py": "",
        "app/cli/main.py": "from app.local import server  # noqa: F401\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # Noise the stack must not upload.
    (root / "app/core/__pycache__").mkdir(exist_ok=True)
    (root / "app/core/__pycache__/config.cpython-311.pyc").write_bytes(b"\0")
    return root


@pytest.fixture
def source_root(tmp_path: Path) -> Path:
    return make_source_tree(tmp_path / "repo")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text("pipelineInfo:\n  name: fraud-training\n")
    return path


def run_component(build: Callable[[], Any]) -> MockRun:
    """Run ``build`` (which creates one component) under fresh mocks."""

    def program_body() -> dict[str, Any]:
        build()
        return {}

    return run_with_mocks(program_body, project="fraud-mlops", stack="test")


def run_program(
    stack: str,
    tmp_path: Path,
    source_root: Path | None = None,
    mocks: pulumi.runtime.Mocks | None = None,
    **overrides: str,
) -> MockRun:
    """Run the real program (``stacks.program.main``) with ``Pulumi.<stack>.yaml``.

    ``overrides`` are flat keys (``function.public="true"``); the pipeline
    template is a temporary file, the app sources a fixture tree unless given.
    """
    values = stack_config(ROOT, stack)
    template = tmp_path / "pipeline.yaml"
    template.write_text("pipelineInfo:\n  name: fraud-training\n")
    values[f"{NAMESPACE}:pipeline.templatePath"] = str(template)
    # Prebuilt images: the stand-in tree has no image sources to stage. The program's
    # own build of them is tested on the real tree (tests/infra/stacks/test_images_flow.py).
    values[f"{NAMESPACE}:images.trainer"] = TRAINER_REF
    values[f"{NAMESPACE}:images.serving"] = SERVING_REF
    for key, value in overrides.items():
        values[f"{NAMESPACE}:{key}"] = value
    root = source_root or make_source_tree(tmp_path / "repo")
    return run_with_mocks(
        lambda: program.main(root), project=NAMESPACE, stack=stack, config=values, mocks=mocks
    )


def children(run: MockRun, component: str) -> list[Registration]:
    """Custom resources directly under the component named ``component``."""
    return [r for r in run.registrations if r.parent_name == component and r.custom]


def assert_component_shape(
    run: MockRun, component: str, type_token: str, *, inputs: tuple[str, ...] = ()
) -> None:
    """The component exists with its type, and every resource the test did not
    create itself (``inputs``) is parented to it and named from its name."""
    (comp,) = [r for r in run.registrations if r.name == component and not r.custom]
    assert comp.type == type_token
    assert comp.parent_type == "pulumi:pulumi:Stack"
    mine = [r for r in run.registrations if r.custom and r.name not in inputs]
    assert mine, "the component created nothing"
    for r in mine:
        assert r.parent_name == component, f"{r.name} is parented to {r.parent_name!r}"
        assert r.name.startswith(f"{component}-"), f"{r.name} is not named from {component}"


@pytest.fixture(scope="session")
def dev_run(tmp_path_factory: pytest.TempPathFactory) -> MockRun:
    return run_program("dev", tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="session")
def prod_run(tmp_path_factory: pytest.TempPathFactory) -> MockRun:
    return run_program("prod", tmp_path_factory.mktemp("prod"))
