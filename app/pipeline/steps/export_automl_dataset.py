"""Step: the time split as CSV files for AutoML: one to train on, one to batch-predict.

AutoML's serving model is refit on *all* the rows it is given, its own test split
included (Vertex AI's "Data splits for tabular data": the serving model is trained on
the training, validation and test sets). So it is given only ``build_dataset``'s train
rows, split again by time into its training/validation/test. Our validation rows
(threshold) and holdout rows (evaluation, gate) stay unseen by AutoML, exactly as they
are unseen by the custom trainer's fit, and are batch-predicted instead.
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Output

from app.pipeline.steps import trainer_step


@trainer_step
def export_automl_dataset(
    config_json: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    holdout: Input[Dataset],
    training_table: Output[Dataset],
    prediction_rows: Output[Dataset],
) -> NamedTuple(  # type: ignore[valid-type]
    "AutoMLExport",
    [
        ("training_uri", str),
        ("prediction_uris", list),
        ("target_column", str),
        ("split_column", str),
    ],
):
    """Write the AutoML training CSV (features, label, split) and the rows to predict.

    Returns the files' URIs as Google's components read them (gs:// on Vertex AI, where
    an artifact's ``path`` is its /gcs/ mount) and the column names the CSV uses.
    """
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from app.core.config import RuntimeConfig
    from app.core.model.features import LABEL, labels
    from app.core.model.split import time_split
    from app.core.schema import MODEL_FEATURES
    from app.core.step_report import reported

    # Everything the body needs is here: the executor's kfp.dsl cannot import a step module.
    # AutoML's predefined split values (the API's PredefinedSplit: training, validation, test).
    automl_splits = ("training", "validation", "test")
    split_column = "split"
    training_file = "automl_training.csv"
    prediction_file = "automl_prediction_rows.csv"

    with reported("export_automl_dataset"):
        cfg = RuntimeConfig.from_json(config_json)
        # The same function and fractions as build_dataset, applied to the train rows.
        inner = time_split(
            pd.read_parquet(train.path),
            holdout_fraction=cfg.training.holdout_fraction,
            validation_fraction=cfg.training.validation_fraction,
        )
        parts = []
        for value, part in zip(
            automl_splits, (inner.train, inner.validation, inner.holdout), strict=True
        ):
            out = part[list(MODEL_FEATURES)].copy()
            out[LABEL] = labels(part)
            out[split_column] = value
            parts.append(out)
        table = pd.concat(parts, ignore_index=True)
        Path(training_table.path).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(training_table.path) / training_file, index=False)
        training_table.metadata.update(
            {
                "rows": len(table),
                **{f"{v}_rows": int((table[split_column] == v).sum()) for v in automl_splits},
            }
        )

        # No label: Vertex AI scores these rows, and the label never leaves our hands.
        rows = []
        for name, artifact in (("validation", validation), ("holdout", holdout)):
            frame = pd.read_parquet(artifact.path)
            part = frame[list(MODEL_FEATURES)].copy()
            # evaluate_predictions joins the scores back to row i of each part by this id.
            part.insert(0, "row_id", [f"{name}-{i}" for i in range(len(frame))])
            rows.append(part)
        predict = pd.concat(rows, ignore_index=True)
        Path(prediction_rows.path).mkdir(parents=True, exist_ok=True)
        predict.to_csv(Path(prediction_rows.path) / prediction_file, index=False)
        prediction_rows.metadata.update({"rows": len(predict)})
    AutoMLExport = namedtuple(
        "AutoMLExport", ["training_uri", "prediction_uris", "target_column", "split_column"]
    )
    return AutoMLExport(
        f"{training_table.uri.rstrip('/')}/{training_file}",
        [f"{prediction_rows.uri.rstrip('/')}/{prediction_file}"],
        LABEL,
        split_column,
    )
