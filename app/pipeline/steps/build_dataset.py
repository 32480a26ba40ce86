"""Step: the immutable snapshot, split by time into train, validation and holdout."""

from kfp.dsl import Dataset, Output

from app.pipeline.steps import trainer_step


@trainer_step
def build_dataset(
    config_json: str,
    snapshot_id: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    holdout: Output[Dataset],
) -> None:
    """Read the immutable snapshot and split it by time into three parquet files."""
    from app.backends import Backends
    from app.core.config import RuntimeConfig
    from app.core.model.split import time_split
    from app.core.step_report import reported

    with reported("build_dataset"):
        cfg = RuntimeConfig.from_json(config_json)
        frame = Backends(cfg).warehouse.read_snapshot(snapshot_id)
        splits = time_split(
            frame,
            holdout_fraction=cfg.training.holdout_fraction,
            validation_fraction=cfg.training.validation_fraction,
        )
        for artifact, part in (
            (train, splits.train),
            (validation, splits.validation),
            (holdout, splits.holdout),
        ):
            part.to_parquet(artifact.path, index=False)
            artifact.metadata.update(
                {"snapshot_id": snapshot_id, "rows": len(part), "frauds": int(part["label"].sum())}
            )
