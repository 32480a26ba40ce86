from __future__ import annotations

import numpy as np
import pytest

from app.core.config import TrainingConfig
from app.core.errors import InvalidInputError
from app.core.model.artifact import FraudModel
from app.core.model.evaluate import evaluate_scores
from app.core.model.features import labels
from app.core.model.split import Splits, time_split
from app.core.model.train import train_model
from tests.support.synthetic import synthetic_training_frame


def test_train_model_signal_bearing_data_reaches_auprc_well_above_fraud_rate(
    splits: Splits, trained: FraudModel
) -> None:
    evaluation = evaluate_scores(
        labels(splits.holdout), trained.score_frame(splits.holdout), trained.threshold
    )

    assert evaluation.fraud_rate < 0.05
    assert evaluation.auprc > 0.8
    assert evaluation.roc_auc > 0.95
    assert evaluation.recall > 0.5


def test_train_model_rare_fraud_near_the_ulb_rate_still_ranks_well() -> None:
    # ~0.2% fraud, 28 training frauds: without the leaf bounds this scored AUPRC 0.16.
    frame = synthetic_training_frame(30_000, fraud_rate=0.002, cards=2000, seed=0)
    splits = time_split(frame, holdout_fraction=0.2, validation_fraction=0.2)

    model = train_model(splits.train, splits.validation, TrainingConfig())

    evaluation = evaluate_scores(
        labels(splits.holdout), model.score_frame(splits.holdout), model.threshold
    )
    assert evaluation.fraud_rate < 0.003
    assert evaluation.auprc > 0.8
    assert evaluation.roc_auc > 0.98
    assert model.threshold < 0.99


def test_train_model_same_seed_gives_identical_scores(splits: Splits, trained: FraudModel) -> None:
    again = train_model(splits.train, splits.validation, TrainingConfig())

    assert again.threshold == trained.threshold
    assert np.array_equal(again.score_frame(splits.holdout), trained.score_frame(splits.holdout))


def test_train_model_params_record_imbalance_handling_and_early_stopping(
    splits: Splits, trained: FraudModel
) -> None:
    frauds = int(splits.train["label"].sum())

    assert trained.params["scale_pos_weight"] == pytest.approx(((3000 - frauds) / frauds) ** 0.5)
    assert trained.params["threshold_rule"] == "max_f1_on_validation"
    assert 1 <= trained.params["best_iteration"] <= 300
    assert trained.params["deterministic"] is True
    assert trained.params["num_threads"] == 2
    assert 0.0 < trained.threshold < 1.0


def test_train_model_validation_without_fraud_raises_invalid_input(splits: Splits) -> None:
    no_fraud = splits.validation.assign(label=0)

    with pytest.raises(InvalidInputError, match="validation split .* has no fraud"):
        train_model(splits.train, no_fraud, TrainingConfig())
