from __future__ import annotations

import pandas as pd
import pytest

from app.core.config import TrainingConfig
from app.core.model.artifact import FraudModel
from app.core.model.split import Splits, time_split
from app.core.model.train import train_model
from tests.support.synthetic import synthetic_training_frame


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return synthetic_training_frame(5000, seed=1)


@pytest.fixture(scope="session")
def splits(frame: pd.DataFrame) -> Splits:
    return time_split(frame, holdout_fraction=0.2, validation_fraction=0.2)


@pytest.fixture(scope="session")
def trained(splits: Splits) -> FraudModel:
    return train_model(splits.train, splits.validation, TrainingConfig())
