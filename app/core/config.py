"""The one typed runtime config that the DAG, the pipeline and the function read.

Locally it is derived from ``FRAUD_MLOPS_HOME``; on GCP the Pulumi stack builds
it from its resources' outputs and delivers it as JSON (``FRAUD_MLOPS_CONFIG``).
Each backend is picked by a discriminated ``kind``; :mod:`app.backends` is the
only place that turns a kind into an implementation.

Nothing here reads the environment at import time: call :func:`load_config`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.errors import ConfigError

CONFIG_ENV = "FRAUD_MLOPS_CONFIG"
HOME_ENV = "FRAUD_MLOPS_HOME"
DEFAULT_HOME = ".fraud-mlops"

_GCP_ID = r"^[a-z][a-z0-9_-]{0,62}$"
# An image pinned by digest in a registry (Artifact Registry on GCP): what Vertex AI
# pulls is exactly what was built and scanned, never whatever a tag points at now.
IMAGE_DIGEST_REF = r"^[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- warehouse -------------------------------------------------------------


class DuckDBWarehouseConfig(_Strict):
    kind: Literal["duckdb"] = "duckdb"
    path: Path


class BigQueryWarehouseConfig(_Strict):
    kind: Literal["bigquery"] = "bigquery"
    project: str
    location: str = "US"
    raw_dataset: str = Field(pattern=_GCP_ID)
    training_dataset: str = Field(pattern=_GCP_ID)
    snapshot_dataset: str = Field(pattern=_GCP_ID)
    # Table snapshots expire; lineage records outlive them, so they get a dataset of their own.
    lineage_dataset: str = Field(default="lineage", pattern=_GCP_ID)
    snapshot_expiration_days: int = Field(default=90, ge=1)
    # Another BigQuery endpoint (a private one, an emulator); None: Google's default.
    api_endpoint: str | None = None


WarehouseConfig = Annotated[
    DuckDBWarehouseConfig | BigQueryWarehouseConfig, Field(discriminator="kind")
]


# --- online store ----------------------------------------------------------


class SQLiteOnlineStoreConfig(_Strict):
    kind: Literal["sqlite"] = "sqlite"
    path: Path


class VertexOnlineStoreConfig(_Strict):
    """Vertex AI Feature Online Store on Bigtable (Optimized serving is deprecated)."""

    kind: Literal["vertex_bigtable"] = "vertex_bigtable"
    project: str
    location: str
    online_store_id: str
    feature_view_id: str
    # The BigQuery table the feature view reads (`bq://project.dataset.table`); the DAG's
    # sync task writes it as the sync account, then asks the view to sync.
    source_table_uri: str | None = Field(default=None, pattern=r"^bq://")
    sync_service_account: str | None = None
    # How long the DAG's sync task waits for the feature view to finish syncing.
    sync_timeout_seconds: float = Field(default=1800.0, gt=0.0)
    sync_poll_seconds: float = Field(default=10.0, gt=0.0)


OnlineStoreConfig = Annotated[
    SQLiteOnlineStoreConfig | VertexOnlineStoreConfig, Field(discriminator="kind")
]


# --- pipeline runner -------------------------------------------------------


class KfpLocalPipelineConfig(_Strict):
    kind: Literal["kfp_local"] = "kfp_local"
    pipeline_root: Path
    # The compiled pipeline (the same YAML Vertex AI runs); the local platform compiles
    # it before it starts a DAG run, as the stack does before it uploads it.
    template_path: Path


class VertexPipelineConfig(_Strict):
    kind: Literal["vertex"] = "vertex"
    project: str
    location: str
    pipeline_root: str = Field(pattern=r"^gs://")
    # The compiled template for ``trainer``; it names ``trainer_image`` by digest.
    template_uri: str = Field(pattern=r"^gs://")
    service_account: str
    trainer: Literal["custom", "automl"] = "custom"
    trainer_image: str = Field(pattern=IMAGE_DIGEST_REF)
    # AutoML Tabular's training budget per run (1,000 = one node hour).
    automl_budget_milli_node_hours: int = Field(default=1000, ge=1000, le=72000)
    # How long the runner waits for a run, and how often it looks.
    run_timeout_seconds: float = Field(default=4 * 3600.0, gt=0.0)
    poll_seconds: float = Field(default=30.0, gt=0.0)


PipelineConfig = Annotated[
    KfpLocalPipelineConfig | VertexPipelineConfig, Field(discriminator="kind")
]


# --- model registry and endpoint --------------------------------------------


class LocalModelRegistryConfig(_Strict):
    kind: Literal["local"] = "local"
    path: Path  # SQLite file holding the versions
    artifacts_dir: Path


class VertexModelRegistryConfig(_Strict):
    """One Vertex AI Model whose versions are the candidates that passed the gate."""

    kind: Literal["vertex"] = "vertex"
    project: str
    location: str
    # The Model's id: its first version is uploaded with it, later ones with parent_model.
    model_id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    model_display_name: str = "fraud-mlops-model"
    # Where each version's artifact directory is kept (gs://bucket/prefix).
    artifact_root: str = Field(pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,220}(?:/[^\s]*)?$")
    # The serving container every version runs in (app/serving), pinned by digest.
    serving_image: str = Field(pattern=IMAGE_DIGEST_REF)


RegistryConfig = Annotated[
    LocalModelRegistryConfig | VertexModelRegistryConfig, Field(discriminator="kind")
]


class LocalEndpointConfig(_Strict):
    kind: Literal["local"] = "local"
    path: Path  # SQLite file holding the traffic split and its history
    # Share of traffic a new version gets before it is promoted (canary); 0 and 100 both
    # mean a new version takes all traffic at once.
    canary_traffic_percent: int = Field(default=0, ge=0, le=100)
    # How long the scoring function may serve the split it read before asking whether
    # it changed. 0: ask on every request, so a promote is seen by the very next one;
    # the question is SQLite's data_version on a kept connection, a few microseconds.
    refresh_seconds: float = Field(default=0.0, ge=0.0)


class VertexEndpointConfig(_Strict):
    kind: Literal["vertex"] = "vertex"
    project: str
    location: str
    # CreateEndpointRequest.endpoint_id: at most 9 digits (no leading zero), or a name.
    endpoint_id: str = Field(pattern=r"^(?:[1-9][0-9]{0,8}|[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?)$")
    # Share of traffic a new version gets before it is promoted (canary).
    canary_traffic_percent: int = Field(default=0, ge=0, le=100)
    # Each deployed version's own machines (a canary gets its own, so it cannot starve
    # the champion).
    machine_type: str = "n2-standard-2"
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=2, ge=1, le=100)
    # The account the serving container runs as; None: Vertex AI's default.
    service_account: str | None = None

    @model_validator(mode="after")
    def _replicas(self) -> VertexEndpointConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


EndpointConfig = Annotated[LocalEndpointConfig | VertexEndpointConfig, Field(discriminator="kind")]


# --- landing zone ------------------------------------------------------------


class LocalLandingConfig(_Strict):
    kind: Literal["local"] = "local"
    path: Path


_TOPIC_PATH = r"^projects/[^/]+/topics/[^/]+$"
_SUBSCRIPTION_PATH = r"^projects/[^/]+/subscriptions/[^/]+$"


class GcsLandingConfig(_Strict):
    kind: Literal["gcs"] = "gcs"
    bucket: str
    subscription: str  # Pub/Sub subscription fed by the bucket's OBJECT_FINALIZE notification
    # The dead-letter path (components/landing.py), as the stack exports it: the landing
    # topic (`retry` republishes there), the dead-letter topic (failed landings are
    # published there with their reason) and its subscription (`status` lists it).
    # None: read from the subscription's own dead-letter policy, and
    # `<subscription>-dead-letters`.
    topic: str | None = Field(default=None, pattern=_TOPIC_PATH)
    dead_letter_topic: str | None = Field(default=None, pattern=_TOPIC_PATH)
    dead_letter_subscription: str | None = Field(default=None, pattern=_SUBSCRIPTION_PATH)

    @model_validator(mode="after")
    def _distinct(self) -> GcsLandingConfig:
        if self.dead_letter_topic is not None and self.dead_letter_topic == self.topic:
            raise ValueError("dead_letter_topic must differ from topic")
        if self.dead_letter_subscription == self.subscription:
            raise ValueError("dead_letter_subscription must differ from subscription")
        return self


LandingConfig = Annotated[LocalLandingConfig | GcsLandingConfig, Field(discriminator="kind")]


# --- orchestration ---------------------------------------------------------


class LocalAirflowConfig(_Strict):
    kind: Literal["airflow_local"] = "airflow_local"
    home: Path  # AIRFLOW_HOME: SQLite metadata DB, logs


class ComposerConfig(_Strict):
    kind: Literal["composer"] = "composer"
    project: str
    location: str
    environment: str


OrchestratorConfig = Annotated[LocalAirflowConfig | ComposerConfig, Field(discriminator="kind")]


# --- secrets -----------------------------------------------------------------


class FileSecretConfig(_Strict):
    """A local secret file, created with mode 0600 on first use."""

    kind: Literal["file"] = "file"
    path: Path


class SecretManagerConfig(_Strict):
    kind: Literal["secret_manager"] = "secret_manager"
    secret_version: str = Field(pattern=r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")


SecretConfig = Annotated[FileSecretConfig | SecretManagerConfig, Field(discriminator="kind")]


# --- behaviour -----------------------------------------------------------------


class GateConfig(_Strict):
    """A candidate model is deployed only if it clears every one of these."""

    min_auprc: float = Field(default=0.5, ge=0.0, le=1.0)
    min_roc_auc: float = Field(default=0.85, ge=0.0, le=1.0)
    # How much AUPRC a candidate may lose against the deployed model and still win.
    max_auprc_regression: float = Field(default=0.0, ge=0.0, le=1.0)


class TrainingConfig(_Strict):
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    n_estimators: int = Field(default=300, ge=10, le=5000)
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    num_leaves: int = Field(default=31, ge=2, le=1024)
    early_stopping_rounds: int = Field(default=30, ge=1)
    seed: int = 7


class CardAssignmentConfig(_Strict):
    """How card numbers are given to rows of a file that has none (the Kaggle file)."""

    pool_size: int = Field(default=2000, ge=1)
    bin_prefix: str = Field(default="400000", pattern=r"^[0-9]{6}$")


class CallPolicyConfig(_Strict):
    """Every GCP call gets a per-attempt timeout and retries transient errors (with
    exponential backoff) only until the deadline: a call never hangs, never retries forever.
    """

    timeout_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    deadline_seconds: float = Field(default=120.0, gt=0.0, le=7200.0)
    initial_backoff_seconds: float = Field(default=0.5, gt=0.0, le=60.0)
    max_backoff_seconds: float = Field(default=10.0, gt=0.0, le=300.0)

    @model_validator(mode="after")
    def _ordered(self) -> CallPolicyConfig:
        if self.deadline_seconds < self.timeout_seconds:
            raise ValueError("deadline_seconds must be at least timeout_seconds")
        return self


class RuntimeConfig(_Strict):
    environment: Literal["local", "dev", "prod"] = "local"
    warehouse: WarehouseConfig
    online_store: OnlineStoreConfig
    pipeline: PipelineConfig
    registry: RegistryConfig
    endpoint: EndpointConfig
    landing: LandingConfig
    orchestrator: OrchestratorConfig
    card_key: SecretConfig
    gate: GateConfig = GateConfig()
    training: TrainingConfig = TrainingConfig()
    cards: CardAssignmentConfig = CardAssignmentConfig()
    # Long calls (a BigQuery load, a feature view sync) and the function's requests, which
    # must answer within a card authorisation's budget, get their own policies.
    gcp_calls: CallPolicyConfig = CallPolicyConfig()
    serving_calls: CallPolicyConfig = CallPolicyConfig(
        timeout_seconds=0.5,
        deadline_seconds=1.5,
        initial_backoff_seconds=0.05,
        max_backoff_seconds=0.2,
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuntimeConfig:
        local_endpoint = isinstance(self.endpoint, LocalEndpointConfig)
        local_registry = isinstance(self.registry, LocalModelRegistryConfig)
        if local_endpoint != local_registry:
            raise ValueError("endpoint and registry must both be local or both be vertex")
        return self

    @classmethod
    def local(cls, home: Path) -> RuntimeConfig:
        home = home.resolve()
        return cls(
            environment="local",
            warehouse=DuckDBWarehouseConfig(path=home / "warehouse.duckdb"),
            online_store=SQLiteOnlineStoreConfig(path=home / "online_store.sqlite"),
            pipeline=KfpLocalPipelineConfig(
                pipeline_root=home / "pipeline_root",
                template_path=home / "pipeline" / "fraud_training_pipeline.yaml",
            ),
            registry=LocalModelRegistryConfig(
                path=home / "registry.sqlite", artifacts_dir=home / "models"
            ),
            endpoint=LocalEndpointConfig(path=home / "endpoint.sqlite"),
            landing=LocalLandingConfig(path=home / "landing"),
            orchestrator=LocalAirflowConfig(home=home / "airflow"),
            card_key=FileSecretConfig(path=home / "secrets" / "card_hmac.key"),
        )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> RuntimeConfig:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    source: Mapping[str, str] = os.environ if env is None else env
    return Path(source.get(HOME_ENV) or DEFAULT_HOME).resolve()


def load_config(env: dict[str, str] | None = None) -> RuntimeConfig:
    """The runtime config from ``FRAUD_MLOPS_CONFIG`` (JSON or ``@path``), else local defaults.

    ``FRAUD_MLOPS_CONFIG`` is what Pulumi delivers to Composer and the function.
    """
    env = dict(os.environ) if env is None else env
    raw = env.get(CONFIG_ENV)
    if raw:
        if raw.startswith("@"):
            path = Path(raw[1:])
            try:
                text = path.read_text()
            except OSError as exc:
                raise ConfigError(f"{CONFIG_ENV}: cannot read {path}: {exc.strerror}") from exc
            return RuntimeConfig.from_json(text, source=str(path))
        return RuntimeConfig.from_json(raw, source=CONFIG_ENV)
    return RuntimeConfig.local(home_dir(env))


def config_env(config: RuntimeConfig) -> dict[str, str]:
    """Environment that hands ``config`` to a child process (Airflow, KFP steps)."""
    return {CONFIG_ENV: config.to_json()}


def dumps_pretty(config: RuntimeConfig) -> str:
    return json.dumps(json.loads(config.to_json()), indent=2, sort_keys=True)
