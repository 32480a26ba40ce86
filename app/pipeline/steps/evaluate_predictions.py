"""Step: AutoML's batch predictions, judged exactly as the custom trainer's model is.

The threshold is chosen on the validation rows with the custom trainer's own rule
(:func:`app.core.model.threshold.max_f1_threshold`), and the holdout is evaluated with
:func:`app.core.model.evaluate.evaluate_scores`, with the same outputs as
``evaluate_model`` (plus the threshold), so the gate judges both trainers alike.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Output

from app.pipeline.steps import trainer_step


@trainer_step
def evaluate_predictions(
    predictions: Input[Artifact],
    validation: Input[Dataset],
    holdout: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    pr_curve: Output[HTML],
) -> NamedTuple(  # type: ignore[valid-type]
    "EvaluationOutputs",
    [("auprc", float), ("roc_auc", float), ("metrics_json", str), ("threshold", float)],
):
    """Choose the threshold on validation, score the holdout; log what evaluate_model logs.

    ``predictions`` is the batch prediction's output directory: JSONL lines
    ``{"instance": {"row_id": ..., ...}, "prediction": {"classes": [...], "scores":
    [...]}}`` (or the id as ``key``). Rows Vertex AI could not score (its ``errors_*``
    files), a row predicted twice or one not predicted fail the step: a silently
    dropped row would change the rows the gate judges on.
    """
    import json
    from collections import namedtuple
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from app.core.errors import InvalidInputError
    from app.core.model.evaluate import evaluate_scores, pr_curve_html
    from app.core.model.features import labels
    from app.core.model.threshold import max_f1_threshold
    from app.core.step_report import reported

    with reported("evaluate_predictions"):
        directory = Path(predictions.path)
        failed = sum(
            1 for path in sorted(directory.glob("errors_*")) for line in path.open() if line.strip()
        )
        if failed:
            raise InvalidInputError(
                f"batch prediction failed for {failed} rows", location=str(directory)
            )
        files = sorted(directory.glob("predictions_*"))
        if not files:
            raise InvalidInputError(
                "batch prediction wrote no predictions", location=str(directory)
            )
        scores: dict[str, float] = {}
        for path in files:
            for number, line in enumerate(path.open(), start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                    key = str(record["key"] if "key" in record else record["instance"]["row_id"])
                    classes = [str(c) for c in record["prediction"]["classes"]]
                    # AutoML's classes are the label's values as strings; "1" is fraud.
                    score = float(record["prediction"]["scores"][classes.index("1")])
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    raise InvalidInputError(
                        f"unreadable batch prediction ({type(exc).__name__}: {exc})",
                        location=where,
                    ) from exc
                if key in scores:
                    raise InvalidInputError(f"row {key!r} predicted twice", location=where)
                scores[key] = score

        def scored(name: str, frame: pd.DataFrame) -> np.ndarray:
            # The ids export_automl_dataset gave row i of each part.
            ids = [f"{name}-{i}" for i in range(len(frame))]
            missing = [i for i in ids if i not in scores]
            if missing:
                raise InvalidInputError(
                    f"batch prediction has no score for {len(missing)} of {len(ids)} "
                    f"{name} rows (first: {missing[0]})"
                )
            return np.array([scores[i] for i in ids], dtype=np.float64)

        validation_frame = pd.read_parquet(validation.path)
        holdout_frame = pd.read_parquet(holdout.path)
        threshold = max_f1_threshold(
            labels(validation_frame), scored("validation", validation_frame)
        )
        evaluation = evaluate_scores(
            labels(holdout_frame), scored("holdout", holdout_frame), threshold
        )
        values = evaluation.metrics()
        for name, value in values.items():
            metrics.log_metric(name, value)
        classification.log_confusion_matrix(["legit", "fraud"], evaluation.confusion_matrix())
        Path(pr_curve.path).write_text(pr_curve_html(evaluation, title="AutoML on holdout"))
    EvaluationOutputs = namedtuple(
        "EvaluationOutputs", ["auprc", "roc_auc", "metrics_json", "threshold"]
    )
    return EvaluationOutputs(
        evaluation.auprc, evaluation.roc_auc, json.dumps(values), evaluation.threshold
    )
