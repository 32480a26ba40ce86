"""Step: fit the classifier on train, choose its threshold on validation."""

from kfp.dsl import Dataset, Input, Model, Output

from app.pipeline.steps import trainer_step


@trainer_step
def train_model(
    config_json: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    model: Output[Model],
) -> float:
    """Fit the classifier; return the decision threshold chosen on validation."""
    from pathlib import Path

    import pandas as pd

    from app.core.config import RuntimeConfig
    from app.core.model.artifact import save_model
    from app.core.model.train import train_model as fit
    from app.core.step_report import reported

    with reported("train_model"):
        cfg = RuntimeConfig.from_json(config_json)
        fitted = fit(pd.read_parquet(train.path), pd.read_parquet(validation.path), cfg.training)
        save_model(fitted, Path(model.path))
        model.metadata.update(
            {
                "framework": "lightgbm",
                "threshold": fitted.threshold,
                "best_iteration": fitted.params["best_iteration"],
            }
        )
    return fitted.threshold
