from __future__ import annotations

from pathlib import Path

import pytest

from app.backends.local.sqlite_endpoint import SQLiteModelEndpoint
from app.backends.local.sqlite_registry import SQLiteModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> SQLiteModelRegistry:
    return SQLiteModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")


@pytest.fixture
def endpoint(registry: SQLiteModelRegistry) -> SQLiteModelEndpoint:
    return SQLiteModelEndpoint(registry.db_path.with_name("endpoint.sqlite"), registry)
