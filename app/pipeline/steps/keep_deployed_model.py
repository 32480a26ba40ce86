"""Step: the gate's rejected branch, which deploys nothing."""

from app.pipeline.steps import trainer_step


@trainer_step
def keep_deployed_model(reason: str) -> str:
    """Deploy nothing; an empty version says so downstream."""
    from app.core.step_report import reported

    with reported("keep_deployed_model"):
        print(f"Not deploying: {reason}")
    return ""
