"""Physical names of the stack's resources, derived from the stack config alone.

Names that GCP needs to be unique (buckets) carry the project id; names the app
reads (datasets, store, view) are fixed so that the runtime config and the IAM
table can name them without waiting for an apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.permissions import CUSTOM_ROLES as CUSTOM_ROLE_SPECS
from stacks.config import StackConfig

ROLES = ("orchestration", "training", "sync", "inference", "build")
# The kinds of project custom role the stack defines (see components.permissions).
CUSTOM_ROLES = tuple(role.kind for role in CUSTOM_ROLE_SPECS)


@dataclass(frozen=True)
class Names:
    project: str
    region: str
    env: str

    @classmethod
    def of(cls, cfg: StackConfig) -> Names:
        return cls(project=cfg.project, region=cfg.region, env=cfg.environment)

    # --- BigQuery ---------------------------------------------------------
    @property
    def dataset_prefix(self) -> str:
        return f"fraud_mlops_{self.env}"

    def dataset(self, kind: str) -> str:
        return f"{self.dataset_prefix}_{kind}"

    # --- buckets, topics ------------------------------------------------------
    def bucket(self, kind: str) -> str:
        name = f"{self.project}-{self.env}-{kind}"
        if len(name) > 63:
            raise ValueError(f"bucket name {name!r} is longer than 63 characters")
        return name

    @property
    def landing_topic(self) -> str:
        return f"fraud-mlops-{self.env}-landing"

    @property
    def landing_subscription(self) -> str:
        return f"fraud-mlops-{self.env}-landing-dag"

    # --- identities ---------------------------------------------------------
    def account_id(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown service account role {role!r}")
        short = {"orchestration": "orch", "training": "train"}.get(role, role)
        return f"fmo-{self.env}-{short}"

    def account_email(self, role: str) -> str:
        return f"{self.account_id(role)}@{self.project}.iam.gserviceaccount.com"

    # --- Vertex, Composer, function ---------------------------------------------
    @property
    def online_store(self) -> str:
        return f"fraud_mlops_{self.env}"

    @property
    def feature_view(self) -> str:
        return "card_features"

    @property
    def endpoint(self) -> str:
        # The endpoint's id (CreateEndpointRequest.endpoint_id). A name, not a number:
        # Vertex takes at most 9 digits for a numeric id, and a name reads as what it
        # is in URLs, logs and the console. Endpoints live in the project and region,
        # so the environment is all it needs to be unique.
        return f"fraud-mlops-{self.env}-serving"

    @property
    def composer(self) -> str:
        return f"fraud-mlops-{self.env}"

    @property
    def function(self) -> str:
        return f"fraud-mlops-{self.env}-predict"

    @property
    def function_repository(self) -> str:
        return f"fraud-mlops-{self.env}-functions"

    @property
    def image_repository(self) -> str:
        # The trainer and serving images (Docker format, Artifact Registry).
        return f"fraud-mlops-{self.env}-images"

    def custom_role(self, kind: str) -> str:
        # Custom role ids allow no hyphens; a deleted id stays reserved for weeks,
        # so each stack keeps one stable id per role.
        if kind not in CUSTOM_ROLES:
            raise ValueError(f"unknown custom role {kind!r}")
        return f"fraud_mlops_{self.env}_{kind}"

    @property
    def endpoint_predictor_role(self) -> str:
        return self.custom_role("endpoint_predictor")

    @property
    def endpoint_deployer_role(self) -> str:
        return self.custom_role("endpoint_deployer")

    @property
    def training_pipeline_role(self) -> str:
        return self.custom_role("training_pipeline")

    @property
    def pipeline_launcher_role(self) -> str:
        return self.custom_role("pipeline_launcher")

    @property
    def feature_view_syncer_role(self) -> str:
        return self.custom_role("feature_view_syncer")

    @property
    def card_key_secret(self) -> str:
        return f"fraud-mlops-{self.env}-card-hmac-key"
