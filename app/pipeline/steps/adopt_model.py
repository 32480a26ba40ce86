"""Step: the AutoML model that passed the gate becomes the next model version."""

from kfp.dsl import Artifact, Input

from app.pipeline.steps import trainer_step


@trainer_step
def adopt_model(
    config_json: str,
    model: Input[Artifact],
    snapshot_id: str,
    run_name: str,
    threshold: float,
    metrics_json: str,
    optimization_objective: str,
    budget_milli_node_hours: int,
) -> str:
    """Adopt the AutoML model into the registry as the next version; return that version.

    ``model`` is AutoML's ``google.VertexModel`` output, read as a plain artifact so the
    trainer image needs no Google pipeline components: its ``resourceName`` metadata
    names the model. Adoption is idempotent per (``snapshot_id``, ``run_name``) like
    registration, so a retried run gets the version it adopted before.
    """
    import json

    from app.backends import Backends
    from app.core.config import RuntimeConfig
    from app.core.errors import InvalidInputError
    from app.core.step_report import reported

    with reported("adopt_model"):
        resource = str(model.metadata.get("resourceName") or "")
        if not resource.startswith("projects/"):
            raise InvalidInputError(
                f"AutoML's model artifact names no Vertex model (resourceName {resource!r})",
                location=model.uri,
            )
        cfg = RuntimeConfig.from_json(config_json)
        version = Backends(cfg).registry.adopt(
            model_resource=resource,
            snapshot_id=snapshot_id,
            run_name=run_name,
            threshold=threshold,
            metrics=json.loads(metrics_json),
            params={
                "framework": "automl",
                "source_model": resource,
                "optimization_objective": optimization_objective,
                "budget_milli_node_hours": budget_milli_node_hours,
                "threshold_rule": "max_f1_on_validation",
            },
        )
    return version.version
