"""Google-managed service agents the stack grants roles to, created explicitly.

Some agents appear only on first use of their service (Vertex AI's when the
first Vertex resource is made, Secret Manager's on the first CMEK secret), so a
grant to ``service-N@...`` built from a string can race the agent's creation on
a new project. ``ServiceIdentity`` creates (or returns) the agent first, and
every grant names its ``member`` output, which orders the grant after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.base import Component

# Agents the stack always grants something to: Vertex AI (feature sync, request
# log), Composer (acts as the orchestration account) and Pub/Sub (forwards landing
# events to their dead-letter topic). With a stack key the program adds the agents
# that encrypt with it (components.security).
BASE_AGENTS: tuple[str, ...] = ("aiplatform", "composer", "pubsub")


@dataclass(frozen=True)
class ServiceAgentsArgs:
    project: str
    services: Sequence[str] = BASE_AGENTS

    def validate(self) -> None:
        if not self.services:
            raise ValueError("ServiceAgentsArgs.services: at least one service")
        bad = [s for s in self.services if not s.isalnum() or s != s.lower()]
        if bad:
            raise ValueError(f"ServiceAgentsArgs.services: {bad} are not short API names")


class ServiceAgents(Component):
    def __init__(
        self, name: str, args: ServiceAgentsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("ServiceAgents", name, opts)
        self.identities: dict[str, gcp.projects.ServiceIdentity] = {
            service: gcp.projects.ServiceIdentity(
                self.n(service),
                project=args.project,
                service=f"{service}.googleapis.com",
                opts=self.child(),
            )
            for service in args.services
        }
        self.register_outputs({s: i.email for s, i in self.identities.items()})

    def member(self, service: str) -> pulumi.Output[str]:
        """``serviceAccount:<agent>``, known only once the agent exists."""
        if service not in self.identities:
            raise KeyError(f"ServiceAgents: no agent for {service!r}; add it to services")
        return self.identities[service].member
