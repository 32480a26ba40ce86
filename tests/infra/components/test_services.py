from __future__ import annotations

import pytest

from components.services import (
    PERIMETER_APIS,
    REQUIRED_APIS,
    ProjectServices,
    ProjectServicesArgs,
)
from tests.infra.conftest import assert_component_shape, run_component


def test_project_services_enables_each_api_without_disabling_on_destroy() -> None:
    run = run_component(lambda: ProjectServices("services", ProjectServicesArgs(project="p")))

    assert_component_shape(run, "services", "fraud-mlops:gcp:ProjectServices")
    services = run.of_type("gcp:projects/service:Service")
    assert sorted(r.inputs["service"] for r in services) == sorted(REQUIRED_APIS)
    assert all(r.inputs["disableOnDestroy"] is False for r in services)


def test_project_services_required_apis_cover_impersonation_and_project_iam() -> None:
    assert "iamcredentials.googleapis.com" in REQUIRED_APIS
    assert "cloudresourcemanager.googleapis.com" in REQUIRED_APIS
    # Only a perimeter needs it; the program adds PERIMETER_APIS then.
    assert "accesscontextmanager.googleapis.com" not in REQUIRED_APIS
    assert PERIMETER_APIS == ("accesscontextmanager.googleapis.com",)


def test_project_services_args_not_an_api_raises_naming_field() -> None:
    with pytest.raises(ValueError, match=r"ProjectServicesArgs\.apis"):
        ProjectServicesArgs(project="p", apis=("bigquery",)).validate()
