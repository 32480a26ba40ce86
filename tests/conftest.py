from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import RuntimeConfig
from app.core.data.generate import GeneratedData, generate, write_csv


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
