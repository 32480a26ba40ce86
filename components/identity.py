"""One service account per role; no keys, ever (workloads use their attached
identity, CI uses Workload Identity Federation)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.base import Component

_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")

PURPOSES: Mapping[str, str] = {
    "orchestration": "Composer environment: runs the DAGs that land data and start training",
    "training": "Vertex AI pipeline runs: read pinned training data, write models",
    "sync": "Builds the feature view's source table from the training data",
    "inference": "Prediction function: reads online features, calls the endpoint",
    "build": "Cloud Build for the prediction function's image",
}


@dataclass(frozen=True)
class IdentityArgs:
    project: str
    # role -> account id, e.g. {"inference": "fmo-dev-inference"}
    account_ids: Mapping[str, str]

    def validate(self) -> None:
        unknown = set(self.account_ids) - set(PURPOSES)
        if unknown:
            raise ValueError(f"IdentityArgs.account_ids: unknown roles {sorted(unknown)}")
        for role, account_id in self.account_ids.items():
            if not _ACCOUNT_ID.match(account_id):
                raise ValueError(
                    f"IdentityArgs.account_ids[{role!r}]: {account_id!r} is not 6-30 "
                    "lowercase letters, digits or hyphens"
                )


class Identity(Component):
    def __init__(
        self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("Identity", name, opts)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {
            role: gcp.serviceaccount.Account(
                self.n(role),
                project=args.project,
                account_id=account_id,
                display_name=f"fraud-mlops {role}",
                description=PURPOSES[role],
                opts=self.child(),
            )
            for role, account_id in sorted(args.account_ids.items())
        }
        self.register_outputs({role: sa.email for role, sa in self.accounts.items()})

    def email(self, role: str) -> pulumi.Output[str]:
        return self.accounts[role].email

    def member(self, role: str) -> pulumi.Output[str]:
        return self.accounts[role].email.apply(lambda e: f"serviceAccount:{e}")

    def resource_name(self, role: str) -> pulumi.Output[str]:
        """``projects/P/serviceAccounts/EMAIL``, the form SA-level IAM wants."""
        return self.accounts[role].name
