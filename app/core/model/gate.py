"""The deployment gate: absolute quality bars plus no regression against the champion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.core.config import GateConfig
from app.core.model.evaluate import evaluate_scores
from app.core.model.features import labels


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str


def decide(
    *,
    auprc: float,
    roc_auc: float,
    champion_auprc: float | None,
    cfg: GateConfig,
    champion_version: str | None = None,
) -> GateDecision:
    """``champion_auprc`` is the deployed model's AUPRC on the candidate's own holdout
    (None when nothing is deployed), so both are judged on the same rows."""
    failures = []
    if auprc < cfg.min_auprc:
        failures.append(f"AUPRC {auprc:.4f} is below the minimum {cfg.min_auprc:.4f}")
    if roc_auc < cfg.min_roc_auc:
        failures.append(f"ROC AUC {roc_auc:.4f} is below the minimum {cfg.min_roc_auc:.4f}")
    if champion_auprc is not None:
        floor = champion_auprc - cfg.max_auprc_regression
        if auprc < floor:
            failures.append(
                f"AUPRC {auprc:.4f} is worse than deployed {champion_version or 'model'}'s "
                f"{champion_auprc:.4f} on the same holdout (allowed regression "
                f"{cfg.max_auprc_regression:.4f})"
            )
    if failures:
        return GateDecision(False, "Rejected: " + "; ".join(failures) + ".")
    against = (
        "no model is deployed yet"
        if champion_auprc is None
        else f"deployed {champion_version or 'model'} scores AUPRC {champion_auprc:.4f} "
        "on the same holdout"
    )
    return GateDecision(
        True,
        f"Passed: AUPRC {auprc:.4f} >= {cfg.min_auprc:.4f} and ROC AUC {roc_auc:.4f} >= "
        f"{cfg.min_roc_auc:.4f}; {against}.",
    )


def champion_auprc(scores: np.ndarray, holdout: pd.DataFrame, threshold: float) -> float:
    """The deployed model's AUPRC from its ``scores`` of the candidate's holdout rows.

    The caller has the champion score them through the registry (loaded, or a batch
    prediction for an AutoML model); one that cannot score fails the gate step instead
    of being replaced unseen: someone must look at why the live model cannot score.
    """
    return evaluate_scores(labels(holdout), scores, threshold).auprc
