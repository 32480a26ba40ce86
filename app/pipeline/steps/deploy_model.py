"""Step: put the version just registered on the endpoint, if the gate's champion still holds."""

from app.pipeline.steps import trainer_step


@trainer_step
def deploy_model(config_json: str, version: str, expected_champion: str) -> str:
    """Deploy ``version`` (at the canary share, when one is configured); return it.

    ``expected_champion`` is the champion the gate judged against ("" for none): if
    another run changed the champion since, the endpoint refuses with ConflictError
    and nothing changes, so two runs never both promote.
    """
    from app.backends import Backends
    from app.core.config import RuntimeConfig
    from app.core.step_report import reported

    with reported("deploy_model"):
        backends = Backends(RuntimeConfig.from_json(config_json))
        split = backends.endpoint.deploy(
            backends.registry.get(version), expected_champion=expected_champion or None
        )
        print("traffic: " + ", ".join(f"{v} {p}%" for v, p in split.items()))
    return version
