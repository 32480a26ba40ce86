"""Step: what Google's AutoML components need from the run's config, as their own inputs.

The pipeline's parameters stay ``config_json``, ``snapshot_id`` and ``run_name`` for
both trainers; Google's components take project, location and budget as separate
inputs, so this step reads them out of the config (and names what the run creates).
"""

from typing import NamedTuple

from app.pipeline.steps import trainer_step


@trainer_step
def vertex_settings(config_json: str, snapshot_id: str, run_name: str) -> NamedTuple(  # type: ignore[valid-type]
    "VertexSettings",
    [
        ("project", str),
        ("location", str),
        ("budget_milli_node_hours", int),
        ("service_account", str),
        ("display_name", str),
        ("labels", dict),
        ("batch_output_prefix", str),
    ],
):
    """The Vertex settings for AutoML; fail before anything is trained if AutoML cannot run.

    AutoML trains only on Vertex AI and its model can only be adopted by the Vertex
    registry, so any other config is refused here, not after a paid training job.
    """
    import re
    from collections import namedtuple

    from app.core.config import RuntimeConfig, VertexModelRegistryConfig, VertexPipelineConfig
    from app.core.errors import ConfigError
    from app.core.step_report import reported

    with reported("vertex_settings"):
        cfg = RuntimeConfig.from_json(config_json)
        pipeline = cfg.pipeline
        if not isinstance(pipeline, VertexPipelineConfig):
            raise ConfigError("the automl trainer runs only on Vertex AI (pipeline.kind 'vertex')")
        if pipeline.trainer != "automl":
            raise ConfigError(
                f"pipeline.trainer is {pipeline.trainer!r}: this is the automl trainer's template"
            )
        if not isinstance(cfg.registry, VertexModelRegistryConfig):
            raise ConfigError("an AutoML model can only be adopted by the vertex registry")

        def label(text: str) -> str:
            # Vertex label values: at most 63 of lowercase [a-z0-9_-].
            return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]

        labels = {
            "app": "fraud-mlops",
            "trainer": "automl",
            "snapshot_id": label(snapshot_id),
            "run_name": label(run_name),
        }
        display_name = f"{cfg.registry.model_display_name}-automl-{run_name}"[:128]
        prefix = f"{pipeline.pipeline_root.rstrip('/')}/automl-batch-predictions/{label(run_name)}"
    VertexSettings = namedtuple(
        "VertexSettings",
        [
            "project",
            "location",
            "budget_milli_node_hours",
            "service_account",
            "display_name",
            "labels",
            "batch_output_prefix",
        ],
    )
    return VertexSettings(
        pipeline.project,
        pipeline.location,
        pipeline.automl_budget_milli_node_hours,
        pipeline.service_account,
        display_name,
        labels,
        prefix,
    )
