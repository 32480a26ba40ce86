from __future__ import annotations

from pathlib import Path

import pytest

from app.core.registry.local import LocalModelEndpoint, LocalModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")


@pytest.fixture
def endpoint(registry: LocalModelRegistry) -> LocalModelEndpoint:
    return LocalModelEndpoint(registry.db_path)
