from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.errors import InvalidInputError
from app.core.model.evaluate import evaluate_scores, pr_curve_html, write_pr_curve_png


def test_evaluate_scores_known_scores_gives_exact_counts_and_metrics() -> None:
    y = np.array([0, 0, 1, 1, 0, 0])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.05])

    evaluation = evaluate_scores(y, scores, threshold=0.3)

    assert evaluation.confusion_matrix() == [[3, 1], [0, 2]]
    assert evaluation.precision == pytest.approx(2 / 3)
    assert evaluation.recall == 1.0
    assert evaluation.f1 == pytest.approx(0.8)
    assert evaluation.roc_auc == pytest.approx(7 / 8)
    assert evaluation.auprc == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert evaluation.fraud_rate == pytest.approx(1 / 3)
    assert evaluation.metrics()["rows"] == 6.0


def test_evaluate_scores_threshold_above_all_scores_gives_zero_precision_not_nan() -> None:
    evaluation = evaluate_scores(np.array([0, 1, 0, 1]), np.array([0.1, 0.6, 0.3, 0.7]), 0.99)

    assert (evaluation.precision, evaluation.recall, evaluation.f1) == (0.0, 0.0, 0.0)


def test_evaluate_scores_no_fraud_raises_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="4 rows with 0 frauds"):
        evaluate_scores(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4]), 0.5)


def test_evaluate_scores_nan_score_raises_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="non-finite"):
        evaluate_scores(np.array([0, 1]), np.array([0.1, np.nan]), 0.5)


def test_write_pr_curve_png_writes_a_png_file(tmp_path: Path) -> None:
    evaluation = evaluate_scores(np.array([0, 1, 0, 1]), np.array([0.1, 0.6, 0.3, 0.7]), 0.5)

    path = write_pr_curve_png(evaluation, tmp_path / "plots" / "pr.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000


def test_pr_curve_html_inlines_the_png() -> None:
    evaluation = evaluate_scores(np.array([0, 1, 0, 1]), np.array([0.1, 0.6, 0.3, 0.7]), 0.5)

    page = pr_curve_html(evaluation, title="Holdout <v1>")

    assert page.startswith("<!doctype html>")
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page
    assert "Holdout &lt;v1&gt;" in page
