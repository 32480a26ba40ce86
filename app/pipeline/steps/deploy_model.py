"""Step: switch the endpoint to the version just registered."""

from app.pipeline.steps import trainer_step


@trainer_step
def deploy_model(config_json: str, version: str) -> str:
    """Switch the endpoint to ``version``; return it."""
    from app.backends import Backends
    from app.core.config import RuntimeConfig
    from app.core.step_report import reported

    with reported("deploy_model"):
        backends = Backends(RuntimeConfig.from_json(config_json))
        backends.endpoint.deploy(backends.registry.get(version))
    return version
