"""Holdout metrics, AUPRC first: with ~0.2% fraud, ROC AUC flatters almost any model."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from app.core.errors import InvalidInputError


@dataclass(frozen=True)
class Evaluation:
    auprc: float
    roc_auc: float
    threshold: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    curve_precision: tuple[float, ...]
    curve_recall: tuple[float, ...]

    @property
    def rows(self) -> int:
        return (
            self.true_positives + self.false_positives + self.true_negatives + self.false_negatives
        )

    @property
    def fraud_rate(self) -> float:
        """The AUPRC of a model that guesses: the baseline to beat."""
        return (self.true_positives + self.false_negatives) / self.rows

    def metrics(self) -> dict[str, float]:
        return {
            "auprc": self.auprc,
            "roc_auc": self.roc_auc,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "threshold": self.threshold,
            "fraud_rate": self.fraud_rate,
            "rows": float(self.rows),
        }

    def confusion_matrix(self) -> list[list[int]]:
        """Rows are the true class, columns the predicted one, both ordered (legit, fraud)."""
        return [
            [self.true_negatives, self.false_positives],
            [self.false_negatives, self.true_positives],
        ]


def evaluate_scores(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> Evaluation:
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 1:
        raise InvalidInputError(
            f"labels {y_true.shape} and scores {scores.shape} must be equal-length vectors"
        )
    frauds = int(y_true.sum())
    if frauds == 0 or frauds == len(y_true):
        raise InvalidInputError(
            f"cannot evaluate on {len(y_true)} rows with {frauds} frauds: "
            "AUPRC and ROC AUC need both fraud and legitimate rows"
        )
    if not np.isfinite(scores).all():
        raise InvalidInputError("model produced non-finite scores")

    predicted = scores >= threshold
    actual = y_true == 1
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    tn = int(np.sum(~predicted & ~actual))
    # No alerts at all is precision 0 here, not nan: the gate must compare numbers.
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    curve_precision, curve_recall, _ = precision_recall_curve(y_true, scores)
    return Evaluation(
        auprc=float(average_precision_score(y_true, scores)),
        roc_auc=float(roc_auc_score(y_true, scores)),
        threshold=float(threshold),
        precision=precision,
        recall=recall,
        f1=f1,
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        curve_precision=tuple(float(v) for v in curve_precision),
        curve_recall=tuple(float(v) for v in curve_recall),
    )


def pr_curve_png(evaluation: Evaluation, *, title: str = "Holdout") -> bytes:
    # A bare Figure with the Agg canvas: no pyplot global state, safe off the main thread.
    figure = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.step(evaluation.curve_recall, evaluation.curve_precision, where="post")
    axes.axhline(evaluation.fraud_rate, linestyle="--", color="grey", label="fraud rate")
    axes.plot(
        [evaluation.recall],
        [evaluation.precision],
        "o",
        label=f"threshold {evaluation.threshold:.3f}",
    )
    axes.set_xlabel("Recall")
    axes.set_ylabel("Precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(f"{title}: AUPRC {evaluation.auprc:.3f}, ROC AUC {evaluation.roc_auc:.3f}")
    axes.legend(loc="lower left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_pr_curve_png(evaluation: Evaluation, path: Path, *, title: str = "Holdout") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pr_curve_png(evaluation, title=title))
    return path


def pr_curve_html(evaluation: Evaluation, *, title: str = "Holdout") -> str:
    """A self-contained page (PNG inlined), as the Vertex console renders HTML artifacts."""
    png = base64.b64encode(pr_curve_png(evaluation, title=title)).decode("ascii")
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} precision-recall curve</title></head><body>"
        f'<img alt="precision-recall curve" src="data:image/png;base64,{png}"></body></html>'
    )
