from __future__ import annotations

import pytest

from components.services import REQUIRED_APIS, ProjectServices, ProjectServicesArgs
from tests.infra.conftest import assert_component_shape, run_component


def test_project_services_enables_each_api_without_disabling_on_destroy() -> None:
    run = run_component(lambda: ProjectServices("services", ProjectServicesArgs(project="p")))

    assert_component_shape(run, "services", "fraud-mlops:gcp:ProjectServices")
    services = run.of_type("gcp:projects/service:Service")
    assert sorted(r.inputs["service"] for r in services) == sorted(REQUIRED_APIS)
    assert all(r.inputs["disableOnDestroy"] is False for r in services)


def test_project_services_args_not_an_api_raises_naming_field() -> None:
    with pytest.raises(ValueError, match=r"ProjectServicesArgs\.apis"):
        ProjectServicesArgs(project="p", apis=("bigquery",)).validate()
