from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import RuntimeConfig, TrainingConfig
from app.core.model.artifact import save_model
from app.core.model.split import time_split
from app.core.model.train import train_model
from app.local.generate import GeneratedData, generate, write_csv
from tests.support.synthetic import synthetic_training_frame


@pytest.fixture
def cfg(tmp_path: Path) -> RuntimeConfig:
    return RuntimeConfig.local(tmp_path / "home")


@pytest.fixture(scope="session")
def small_data() -> GeneratedData:
    return generate(3000, fraud_rate=0.02, seed=11)


@pytest.fixture
def small_csv(tmp_path: Path, small_data: GeneratedData) -> Path:
    return write_csv(small_data.frame, tmp_path / "small.csv")


@pytest.fixture
def kaggle_csv(tmp_path: Path, small_data: GeneratedData) -> Path:
    """The original file's exact format: no card column."""
    return write_csv(small_data.frame.head(400), tmp_path / "creditcard.csv", with_cards=False)


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
