"""Steps run through ``.python_func``: the very body KFP ships, on real local backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl

from app.core.config import RuntimeConfig
from app.core.records import SnapshotInfo
from tests.pipeline.snapshots import load_snapshot


def artifact(cls: type, path: Path) -> dsl.Artifact:
    """An output or input artifact as KFP hands it to a step: a local path and metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    made: dsl.Artifact = cls(name=path.name, uri=str(path), metadata={})
    made.path = str(path)
    return made


@pytest.fixture(scope="module")
def step_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("steps")


@pytest.fixture(scope="module")
def step_cfg(step_home: Path) -> RuntimeConfig:
    return RuntimeConfig.local(step_home / "home")


@pytest.fixture(scope="module")
def snapshot(step_cfg: RuntimeConfig) -> SnapshotInfo:
    return load_snapshot(step_cfg, rows=3000)
