from __future__ import annotations

import pytest

from components.service_agents import BASE_AGENTS, ServiceAgents, ServiceAgentsArgs
from stacks.mocks import PROJECT_NUMBER
from tests.infra.conftest import assert_component_shape, run_component

IDENTITY = "gcp:projects/serviceIdentity:ServiceIdentity"


def test_service_agents_default_creates_vertex_composer_and_pubsub_agents() -> None:
    run = run_component(lambda: ServiceAgents("service-agents", ServiceAgentsArgs(project="p")))

    assert_component_shape(run, "service-agents", "fraud-mlops:gcp:ServiceAgents")
    identities = {r.name: r.inputs for r in run.of_type(IDENTITY)}
    # Pub/Sub's agent forwards landing events to their dead-letter topic (components.landing).
    assert BASE_AGENTS == ("aiplatform", "composer", "pubsub")
    assert identities == {
        "service-agents-aiplatform": {"project": "p", "service": "aiplatform.googleapis.com"},
        "service-agents-composer": {"project": "p", "service": "composer.googleapis.com"},
        "service-agents-pubsub": {"project": "p", "service": "pubsub.googleapis.com"},
    }


def test_service_agents_member_is_the_created_agent() -> None:
    members: dict[str, str] = {}

    def build() -> None:
        agents = ServiceAgents("service-agents", ServiceAgentsArgs(project="p"))
        agents.member("aiplatform").apply(lambda m: members.update(aiplatform=m))

    run_component(build)

    agent = f"service-{PROJECT_NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com"
    assert members == {"aiplatform": f"serviceAccount:{agent}"}


def test_service_agents_member_unknown_service_raises_naming_it() -> None:
    def build() -> None:
        ServiceAgents(
            "service-agents", ServiceAgentsArgs(project="p", services=("pubsub",))
        ).member("aiplatform")

    with pytest.raises(KeyError, match="aiplatform"):
        run_component(build)


@pytest.mark.parametrize("services", [(), ("aiplatform.googleapis.com",)])
def test_service_agents_args_invalid_services_raises_naming_field(
    services: tuple[str, ...],
) -> None:
    with pytest.raises(ValueError, match=r"ServiceAgentsArgs\.services"):
        ServiceAgentsArgs(project="p", services=services).validate()
