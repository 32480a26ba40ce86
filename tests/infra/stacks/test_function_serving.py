"""The function's serving shape: the same on Cloud Run as app/local/server.py runs it."""

from __future__ import annotations

import pytest

from app.local import server
from stacks.config import FunctionSettings
from stacks.mocks import MockRun

FUNCTION = "gcp:cloudfunctionsv2/function:Function"


def _service(run: MockRun) -> dict[str, object]:
    (fn,) = run.of_type(FUNCTION)
    service = fn.inputs["serviceConfig"]
    assert isinstance(service, dict)
    return service


def test_function_settings_shape_matches_local_server_constants() -> None:
    assert (FunctionSettings.workers, FunctionSettings.threads) == (
        server.WORKERS,
        server.THREADS,
    )
    assert server.serving_env() == {"WORKERS": "2", "THREADS": "8"}


@pytest.mark.parametrize(
    ("stack_run", "memory", "instances"),
    [("dev_run", "1Gi", (0, 3)), ("prod_run", "1Gi", (2, 50))],
)
def test_function_service_config_stack_sets_measured_shape(
    stack_run: str, memory: str, instances: tuple[int, int], request: pytest.FixtureRequest
) -> None:
    service = _service(request.getfixturevalue(stack_run))

    # One vCPU per gunicorn worker; Cloud Run sends as many requests at once as the
    # instance has threads, no more, so a burst scales out instead of queueing.
    assert service["availableCpu"] == "2"
    assert service["maxInstanceRequestConcurrency"] == 16
    assert service["availableMemory"] == memory
    assert (service["minInstanceCount"], service["maxInstanceCount"]) == instances
    env = service["environmentVariables"]
    assert isinstance(env, dict)
    assert (env["WORKERS"], env["THREADS"]) == ("2", "8")


def test_function_settings_shape_is_not_stack_config() -> None:
    # Measured per CPU shape, not tuned per stack: absent from the model's fields.
    assert {"workers", "threads"}.isdisjoint(FunctionSettings.model_fields)
    settings = FunctionSettings()
    assert (settings.cpu, settings.concurrency) == ("2", 16)
