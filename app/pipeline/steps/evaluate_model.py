"""Step: score the holdout; log metrics, the confusion matrix and the PR curve."""

from typing import NamedTuple

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from app.pipeline.steps import trainer_step


@trainer_step
def evaluate_model(
    model: Input[Model],
    holdout: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    pr_curve: Output[HTML],
) -> NamedTuple(  # type: ignore[valid-type]
    "EvaluationOutputs", [("auprc", float), ("roc_auc", float), ("metrics_json", str)]
):
    """Score the holdout; log the metrics, the confusion matrix and the PR curve."""
    import json
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from app.core.model.artifact import load_model
    from app.core.model.evaluate import evaluate_scores, pr_curve_html
    from app.core.model.features import labels
    from app.core.step_report import reported

    with reported("evaluate_model"):
        candidate = load_model(Path(model.path))
        frame = pd.read_parquet(holdout.path)
        evaluation = evaluate_scores(
            labels(frame), candidate.score_frame(frame), candidate.threshold
        )
        values = evaluation.metrics()
        for name, value in values.items():
            metrics.log_metric(name, value)
        classification.log_confusion_matrix(["legit", "fraud"], evaluation.confusion_matrix())
        Path(pr_curve.path).write_text(pr_curve_html(evaluation, title="Candidate on holdout"))
    EvaluationOutputs = namedtuple("EvaluationOutputs", ["auprc", "roc_auc", "metrics_json"])
    return EvaluationOutputs(evaluation.auprc, evaluation.roc_auc, json.dumps(values))
