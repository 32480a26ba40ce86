"""The stack's configuration: read once from Pulumi config into one typed object.

Keys are flat and dotted (``fraud-mlops:featureStore.maxNodes``) so that each one
can carry a type, a description and a default in ``Pulumi.yaml``. A value set
with ``pulumi config set --path featureStore.maxNodes 3`` (an object under
``featureStore``) is accepted too. Every error names the full key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.config import IMAGE_DIGEST_REF
from components.feature_store import MAX_NODES_FACTOR

NAMESPACE = "fraud-mlops"

_PRINCIPAL = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):.+$")
_KMS_KEY = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/keyRings/[^/]+/cryptoKeys/[^/]+$"
)


_IMAGE_REF_OR_EMPTY = f"^$|{IMAGE_DIGEST_REF}"


class StackConfigError(ValueError):
    """A stack config value is missing or invalid; the message names the key."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WarehouseSettings(_Group):
    snapshot_expiration_days: int = Field(default=90, ge=1, le=3650, alias="snapshotExpirationDays")


class FeatureStoreSettings(_Group):
    min_nodes: int = Field(default=1, ge=1, le=1000, alias="minNodes")
    max_nodes: int = Field(default=3, ge=1, le=1000, alias="maxNodes")
    # Low enough that Bigtable adds nodes before a burst saturates the ones it has.
    cpu_target: int = Field(default=50, ge=10, le=80, alias="cpuTarget")
    sync_cron: str = Field(default="0 * * * *", min_length=9, alias="syncCron")

    @model_validator(mode="after")
    def _bounds(self) -> FeatureStoreSettings:
        if self.max_nodes < self.min_nodes:
            raise ValueError("maxNodes must be >= minNodes")
        # Checked here too, so the error names the key before the engine starts.
        if self.max_nodes > MAX_NODES_FACTOR * self.min_nodes:
            raise ValueError(
                f"maxNodes must be at most {MAX_NODES_FACTOR} x minNodes "
                f"({MAX_NODES_FACTOR * self.min_nodes}); Bigtable autoscaling rejects "
                "a wider range"
            )
        return self


class ComposerSettings(_Group):
    image_version: str = Field(
        # The app's DAGs target Airflow 3; pin a build per stack once it is proven there.
        default="composer-3-airflow-3.1.0",
        pattern=r"^composer-3-airflow-[0-9]+(\.[0-9]+){1,2}(-build\.[0-9]+)?$",
        alias="imageVersion",
    )
    environment_size: Literal[
        "ENVIRONMENT_SIZE_SMALL", "ENVIRONMENT_SIZE_MEDIUM", "ENVIRONMENT_SIZE_LARGE"
    ] = Field(default="ENVIRONMENT_SIZE_SMALL", alias="environmentSize")
    worker_min_count: int = Field(default=1, ge=1, le=100, alias="workerMinCount")
    worker_max_count: int = Field(default=3, ge=1, le=100, alias="workerMaxCount")
    private_ip: bool = Field(default=False, alias="privateIp")

    @model_validator(mode="after")
    def _bounds(self) -> ComposerSettings:
        if self.worker_max_count < self.worker_min_count:
            raise ValueError("workerMaxCount must be >= workerMinCount")
        return self


class EndpointSettings(_Group):
    canary_traffic_percent: int = Field(default=0, ge=0, le=100, alias="canaryTrafficPercent")
    # Each deployed version's machines (a canary has its own while both serve).
    machine_type: str = Field(
        default="n2-standard-2", pattern=r"^[a-z][a-z0-9]*-[a-z0-9-]+$", alias="machineType"
    )
    min_replicas: int = Field(default=1, ge=1, le=100, alias="minReplicas")
    max_replicas: int = Field(default=2, ge=1, le=100, alias="maxReplicas")
    request_logging: bool = Field(default=True, alias="requestLogging")
    request_logging_sampling_rate: float = Field(
        default=1.0, gt=0.0, le=1.0, alias="requestLoggingSamplingRate"
    )

    @model_validator(mode="after")
    def _bounds(self) -> EndpointSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError("maxReplicas must be >= minReplicas")
        return self


class FunctionSettings(_Group):
    min_instances: int = Field(default=0, ge=0, le=100, alias="minInstances")
    max_instances: int = Field(default=5, ge=1, le=1000, alias="maxInstances")
    memory: str = Field(default="512Mi", pattern=r"^[0-9]+(Mi|Gi)$")
    # Principals allowed to call the function (run.invoker on its Cloud Run service).
    invokers: tuple[str, ...] = ()
    # The only way to get an allUsers binding: it must be asked for by name.
    public: bool = False
    # The serving shape, measured on 2 vCPUs (docs/serving.md) and the same in every
    # stack, as app/local/server.py runs it locally: a property of the code on that
    # CPU shape, not a per-stack knob, so not Pulumi config.
    workers: ClassVar[int] = 2
    threads: ClassVar[int] = 8

    @property
    def cpu(self) -> str:
        return str(self.workers)

    @property
    def concurrency(self) -> int:
        return self.workers * self.threads

    @model_validator(mode="after")
    def _bounds(self) -> FunctionSettings:
        if self.max_instances < self.min_instances:
            raise ValueError("maxInstances must be >= minInstances")
        _check_principals("invokers", self.invokers)
        return self


def _check_principals(field: str, members: tuple[str, ...]) -> None:
    for member in members:
        if not _PRINCIPAL.match(member):
            raise ValueError(
                f"{field}: {member!r} is not a principal such as user:… or serviceAccount:…"
            )


class LandingSettings(_Group):
    # Principals that upload files to the landing bucket (objectCreator, no read).
    writers: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _members(self) -> LandingSettings:
        _check_principals("writers", self.writers)
        return self


Trainer = Literal["custom", "automl"]


class PipelineSettings(_Group):
    # Empty: the program compiles app/pipeline itself on every run. Else a prebuilt
    # template, relative to the project root, uploaded as it is.
    template_path: str = Field(default="", alias="templatePath")
    trainer: Trainer = "custom"
    # AutoML Tabular's budget per run, in milli node hours (1000 = one node hour).
    automl_budget_milli_node_hours: int = Field(
        default=1000, ge=1000, le=72000, alias="automlBudgetMilliNodeHours"
    )


class ImagesSettings(_Group):
    """The trainer and serving images. Empty: the program builds and pushes both
    (pulumi-docker-build, needs a Docker daemon). Else digest references built
    elsewhere (the CI workflow), used as they are."""

    trainer: str = Field(default="", pattern=_IMAGE_REF_OR_EMPTY)
    serving: str = Field(default="", pattern=_IMAGE_REF_OR_EMPTY)

    @model_validator(mode="after")
    def _both(self) -> ImagesSettings:
        if bool(self.trainer) != bool(self.serving):
            raise ValueError("set both images.trainer and images.serving, or neither")
        return self


class CmekSettings(_Group):
    # Empty: Google-managed keys. Else one key, in the stack's region, for every
    # resource that accepts one.
    kms_key_name: str = Field(default="", alias="kmsKeyName")

    @model_validator(mode="after")
    def _shape(self) -> CmekSettings:
        if self.kms_key_name and not _KMS_KEY.match(self.kms_key_name):
            raise ValueError(
                "kmsKeyName must look like projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )
        return self


class VpcScSettings(_Group):
    # Numeric access policy id; empty leaves VPC Service Controls off.
    access_policy: str = Field(default="", pattern=r"^[0-9]*$", alias="accessPolicy")
    # A new perimeter starts as a dry run: it logs what it would block, so the
    # ingress rules Composer and Cloud Build need can be found before enforcing.
    dry_run: bool = Field(default=True, alias="dryRun")


class AuditLogSettings(_Group):
    enabled: bool = True


class StackConfig(BaseModel):
    """Everything the program needs from ``Pulumi.<stack>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    region: str = Field(default="us-central1", pattern=r"^[a-z]+-[a-z]+[0-9]$")
    environment: Literal["dev", "prod"]
    deletion_protection: bool = Field(default=True, alias="deletionProtection")
    labels: dict[str, str] = Field(default_factory=dict)
    warehouse: WarehouseSettings = WarehouseSettings()
    landing: LandingSettings = LandingSettings()
    feature_store: FeatureStoreSettings = Field(
        default_factory=FeatureStoreSettings, alias="featureStore"
    )
    composer: ComposerSettings = ComposerSettings()
    endpoint: EndpointSettings = EndpointSettings()
    function: FunctionSettings = FunctionSettings()
    pipeline: PipelineSettings = PipelineSettings()
    images: ImagesSettings = ImagesSettings()
    cmek: CmekSettings = CmekSettings()
    vpc_service_controls: VpcScSettings = Field(
        default_factory=VpcScSettings, alias="vpcServiceControls"
    )
    audit_logs: AuditLogSettings = Field(default_factory=AuditLogSettings, alias="auditLogs")

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        key = self.cmek.kms_key_name
        if key:
            match = _KMS_KEY.match(key)
            assert match is not None  # checked by CmekSettings
            if match["location"] != self.region:
                raise ValueError(
                    f"cmek.kmsKeyName is in {match['location']!r}; it must be in the stack "
                    f"region {self.region!r} so one key serves every resource"
                )
        if self.environment == "prod" and not self.deletion_protection:
            raise ValueError("deletionProtection must be true for the prod environment")
        return self

    @property
    def kms_key(self) -> str | None:
        return self.cmek.kms_key_name or None

    @property
    def all_labels(self) -> dict[str, str]:
        return {"app": "fraud-mlops", "environment": self.environment, **self.labels}


# --- reading -----------------------------------------------------------------


def config_keys() -> Iterator[tuple[str, Any]]:
    """Every flat key (``featureStore.maxNodes``) with its pydantic field info."""
    for name, info in StackConfig.model_fields.items():
        alias = info.alias or name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Group):
            for sub_name, sub_info in annotation.model_fields.items():
                yield f"{alias}.{sub_info.alias or sub_name}", sub_info
        else:
            yield alias, info


def _parse_scalar(key: str, raw: Any, info: Any) -> Any:
    """Pulumi hands every value over as a string; lists and maps arrive as JSON."""
    if not isinstance(raw, str):
        return raw
    if get_origin(info.annotation) in (tuple, dict):
        try:
            return json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as exc:
            raise StackConfigError(f"{NAMESPACE}:{key}: not valid JSON ({exc.msg})") from exc
    return raw


def load(get: Callable[[str], Any]) -> StackConfig:
    """Build the :class:`StackConfig` from a getter of raw values by flat key.

    ``get`` returns None for an unset key (as ``pulumi.Config.get`` does).
    """
    nested: dict[str, Any] = {}
    objects: dict[str, Any] = {}
    for key, info in config_keys():
        raw = get(key)
        group, _, sub = key.partition(".")
        if raw is None and sub:
            # `pulumi config set --path` stores one object under the group key.
            if group not in objects:
                objects[group] = _as_object(group, get(group))
            raw = objects[group].get(sub)
        if raw is None:
            continue
        value = _parse_scalar(key, raw, info)
        if sub:
            nested.setdefault(group, {})[sub] = value
        else:
            nested[key] = value
    try:
        return StackConfig.model_validate(nested)
    except ValidationError as exc:
        raise StackConfigError(describe(exc)) from exc


def _as_object(group: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def describe(exc: ValidationError) -> str:
    """One line per problem, each naming the ``fraud-mlops:`` key it is about."""
    known = {k for k, _ in config_keys()}
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)][:2]
        key = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if key not in known:
            # A cross-field check: its message starts with the key it is about.
            first = msg.split(" ", 1)[0].rstrip(":")
            for candidate in (f"{key}.{first}", first):
                if candidate.strip(".") in known:
                    key = candidate.strip(".")
                    break
        lines.append(f"{NAMESPACE}:{key or '<stack>'}: {msg}")
    return "invalid stack config:\n  " + "\n  ".join(lines)


def from_pulumi() -> StackConfig:
    """The stack's config, as the Pulumi engine hands it to the program."""
    import pulumi

    cfg = pulumi.Config(NAMESPACE)
    return load(cfg.get)
