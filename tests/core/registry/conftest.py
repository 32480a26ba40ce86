from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import TrainingConfig
from app.core.model.artifact import save_model
from app.core.model.split import time_split
from app.core.model.train import train_model
from app.core.registry.local import LocalModelEndpoint, LocalModelRegistry
from tests.support.synthetic import synthetic_training_frame


def _trained_model_dir(root: Path, seed: int, learning_rate: float) -> Path:
    splits = time_split(
        synthetic_training_frame(3000, seed=seed), holdout_fraction=0.2, validation_fraction=0.2
    )
    model = train_model(
        splits.train, splits.validation, TrainingConfig(learning_rate=learning_rate)
    )
    return save_model(model, root / f"model-{seed}")


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different trained models, as the pipeline's train step leaves them."""
    root = tmp_path_factory.mktemp("trained")
    return _trained_model_dir(root, 11, 0.05), _trained_model_dir(root, 12, 0.2)


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")


@pytest.fixture
def endpoint(registry: LocalModelRegistry) -> LocalModelEndpoint:
    return LocalModelEndpoint(registry.db_path)
