"""Step: the candidate that passed the gate becomes the next model version."""

from kfp.dsl import Input, Model

from app.pipeline.steps import trainer_step


@trainer_step
def register_model(
    config_json: str, model: Input[Model], snapshot_id: str, run_name: str, metrics_json: str
) -> str:
    """Record the candidate as the next model version; return that version.

    Registration is idempotent per (``snapshot_id``, ``run_name``): a retried run gets
    the version it registered before, not a second copy.
    """
    import json
    from pathlib import Path

    from app.backends import Backends
    from app.core.config import RuntimeConfig
    from app.core.model.artifact import load_model
    from app.core.step_report import reported

    with reported("register_model"):
        artifact = Path(model.path)
        # Loading proves the artifact is whole before it gets a version number.
        candidate = load_model(artifact)
        version = Backends(RuntimeConfig.from_json(config_json)).registry.register(
            artifact_path=artifact,
            snapshot_id=snapshot_id,
            run_name=run_name,
            threshold=candidate.threshold,
            metrics=json.loads(metrics_json),
            params=candidate.params,
        )
    return version.version
