from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import GateConfig
from app.core.model.artifact import FraudModel, load_model, save_model
from app.core.model.evaluate import evaluate_scores
from app.core.model.features import labels
from app.core.model.gate import champion_auprc, decide
from app.core.model.split import Splits

GATE = GateConfig(min_auprc=0.5, min_roc_auc=0.85, max_auprc_regression=0.01)


def test_decide_no_champion_above_minimums_passes() -> None:
    decision = decide(auprc=0.81, roc_auc=0.97, champion_auprc=None, cfg=GATE)

    assert decision.passed
    assert decision.reason == (
        "Passed: AUPRC 0.8100 >= 0.5000 and ROC AUC 0.9700 >= 0.8500; no model is deployed yet."
    )


def test_decide_below_min_auprc_fails_with_the_numbers() -> None:
    decision = decide(auprc=0.42, roc_auc=0.97, champion_auprc=None, cfg=GATE)

    assert not decision.passed
    assert decision.reason == "Rejected: AUPRC 0.4200 is below the minimum 0.5000."


def test_decide_worse_than_champion_beyond_allowance_fails() -> None:
    decision = decide(
        auprc=0.80, roc_auc=0.97, champion_auprc=0.82, cfg=GATE, champion_version="v0003"
    )

    assert not decision.passed
    assert "AUPRC 0.8000 is worse than deployed v0003's 0.8200 on the same holdout" in (
        decision.reason
    )


def test_decide_within_allowed_regression_passes() -> None:
    decision = decide(
        auprc=0.815, roc_auc=0.97, champion_auprc=0.82, cfg=GATE, champion_version="v0003"
    )

    assert decision.passed
    assert "deployed v0003 scores AUPRC 0.8200 on the same holdout" in decision.reason


def test_decide_every_failure_is_listed() -> None:
    decision = decide(auprc=0.3, roc_auc=0.6, champion_auprc=0.9, cfg=GATE)

    assert not decision.passed
    assert decision.reason.count(";") == 2


def test_champion_auprc_saved_model_scores_the_same_as_evaluating_it_directly(
    tmp_path: Path, splits: Splits, trained: FraudModel
) -> None:
    directory = save_model(trained, tmp_path / "champion")
    expected = evaluate_scores(
        labels(splits.holdout), trained.score_frame(splits.holdout), trained.threshold
    ).auprc

    champion = load_model(directory)
    scores = champion.score_frame(splits.holdout)

    assert champion_auprc(scores, splits.holdout, champion.threshold) == pytest.approx(expected)
