"""The composition root: the one place a config ``kind`` becomes an implementation.

:data:`IMPLEMENTATIONS` maps each role's kinds to an import path, and a class is
imported only when a config asks for it (as Feast's store registry does), so the local
home never imports a cloud client library and a GCP deployment carries only
``app/backends/gcp``. Nothing else in ``app`` branches on a kind: callers get roles
from :class:`Backends` and see only the Protocols of :mod:`app.core.ports`.

Every implementation has ``from_config(section, backends)``: ``section`` is its own
part of the runtime config, ``backends`` gives it the other roles it needs (the
endpoint loads models through the registry, for instance).
"""

from __future__ import annotations

import importlib
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

from app.core import config as c
from app.core.errors import BackendUnavailableError, ConfigError
from app.core.ports import (
    CardKeySource,
    LandingEvents,
    LandingZone,
    Lineage,
    ModelEndpoint,
    ModelRegistry,
    OnlineStore,
    PipelineRunner,
    Warehouse,
)

_LOCAL = "app.backends.local"
_GCP = "app.backends.gcp"

# role -> the runtime-config section that picks its kind
ROLE_SECTIONS: dict[str, str] = {
    "warehouse": "warehouse",
    "lineage": "warehouse",  # lineage lives where the warehouse writes it, in its transactions
    "online_store": "online_store",
    "registry": "registry",
    "endpoint": "endpoint",
    "pipeline_runner": "pipeline",
    "landing": "landing",
    "landing_events": "landing",
    "card_key": "card_key",
}

# role -> kind -> "module:Class"
IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    "warehouse": {
        "duckdb": f"{_LOCAL}.duckdb_warehouse:DuckDBWarehouse",
        "bigquery": f"{_GCP}.bigquery_warehouse:BigQueryWarehouse",
    },
    "lineage": {
        "duckdb": f"{_LOCAL}.duckdb_warehouse:DuckDBLineage",
        "bigquery": f"{_GCP}.bigquery_warehouse:BigQueryLineage",
    },
    "online_store": {
        "sqlite": f"{_LOCAL}.sqlite_online_store:SQLiteOnlineStore",
        "vertex_bigtable": f"{_GCP}.vertex_feature_store:VertexFeatureOnlineStore",
    },
    "registry": {
        "local": f"{_LOCAL}.sqlite_registry:SQLiteModelRegistry",
        "vertex": f"{_GCP}.vertex_registry:VertexModelRegistry",
    },
    "endpoint": {
        "local": f"{_LOCAL}.sqlite_endpoint:SQLiteModelEndpoint",
        "vertex": f"{_GCP}.vertex_endpoint:VertexModelEndpoint",
    },
    "pipeline_runner": {
        "kfp_local": f"{_LOCAL}.kfp_local_runner:KfpLocalPipelineRunner",
        "vertex": f"{_GCP}.vertex_pipeline_runner:VertexPipelineRunner",
    },
    "landing": {
        "local": f"{_LOCAL}.folder_landing:FolderLandingZone",
        "gcs": f"{_GCP}.gcs_landing:GcsLandingZone",
    },
    "landing_events": {
        "local": f"{_LOCAL}.folder_landing:FolderLandingZone",
        "gcs": f"{_GCP}.pubsub_landing_events:PubSubLandingEvents",
    },
    "card_key": {
        "file": f"{_LOCAL}.file_card_key:FileCardKeySource",
        "secret_manager": f"{_GCP}.secret_manager_card_key:SecretManagerCardKeySource",
    },
}

# Kinds the config accepts that have no backend here, each failing fast and naming its
# role and kind. (On GCP Composer's own AssetWatcher pulls the landing events; the
# "gcs" landing events serve its failure callback's dead letters, `status` and `retry`.)
PENDING: dict[str, frozenset[str]] = {
    "warehouse": frozenset(),
    "lineage": frozenset(),
    "online_store": frozenset(),
    "registry": frozenset(),
    "endpoint": frozenset(),
    "pipeline_runner": frozenset(),
    "landing": frozenset(),
    "landing_events": frozenset(),
    "card_key": frozenset(),
}


def implementation(role: str, kind: str) -> type[Any]:
    """The class for ``role`` of ``kind``, imported now."""
    kinds = IMPLEMENTATIONS.get(role)
    if kinds is None:
        raise ConfigError(f"no such role {role!r}")
    target = kinds.get(kind)
    if target is None:
        raise BackendUnavailableError(
            f"{role} kind {kind!r} is configured but its backend is not part of this build "
            "yet; the GCP backends land behind this same seam"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # A deployment ships only the backends its home uses (see components/).
        raise ConfigError(
            f"{role} kind {kind!r} needs {module_name}, which is not installed here"
        ) from exc
    cls: type[Any] = getattr(module, class_name)
    return cls


class Backends:
    """Every role for one runtime config, each built on first use and then kept.

    Satisfies :class:`app.core.ports.Services`. Safe to share between threads.
    """

    def __init__(self, config: c.RuntimeConfig) -> None:
        self._config = config
        self._lock = threading.RLock()

    @property
    def config(self) -> c.RuntimeConfig:
        return self._config

    def _build(self, role: str) -> Any:
        section = getattr(self._config, ROLE_SECTIONS[role])
        with self._lock:
            return implementation(role, section.kind).from_config(section, self)

    @cached_property
    def warehouse(self) -> Warehouse:
        built: Warehouse = self._build("warehouse")
        return built

    @cached_property
    def lineage(self) -> Lineage:
        built: Lineage = self._build("lineage")
        return built

    @cached_property
    def online_store(self) -> OnlineStore:
        built: OnlineStore = self._build("online_store")
        return built

    @cached_property
    def registry(self) -> ModelRegistry:
        built: ModelRegistry = self._build("registry")
        return built

    @cached_property
    def endpoint(self) -> ModelEndpoint:
        built: ModelEndpoint = self._build("endpoint")
        return built

    @cached_property
    def pipeline_runner(self) -> PipelineRunner:
        built: PipelineRunner = self._build("pipeline_runner")
        return built

    @cached_property
    def landing(self) -> LandingZone:
        built: LandingZone = self._build("landing")
        return built

    @cached_property
    def landing_events(self) -> LandingEvents:
        built: LandingEvents = self._build("landing_events")
        return built

    @cached_property
    def card_key(self) -> CardKeySource:
        built: CardKeySource = self._build("card_key")
        return built


def local_airflow_home(config: c.RuntimeConfig) -> Path:
    """AIRFLOW_HOME of the local orchestrator; on GCP, Composer runs the DAG instead."""
    orchestrator = config.orchestrator
    if not isinstance(orchestrator, c.LocalAirflowConfig):
        raise BackendUnavailableError(
            f"orchestrator kind {orchestrator.kind!r} runs the DAG in the cloud (Composer), "
            "not on this machine"
        )
    return orchestrator.home


def local_pipeline_template(config: c.RuntimeConfig) -> Path | None:
    """Where the local home keeps its compiled pipeline; None when a cloud runner is used."""
    pipeline = config.pipeline
    return pipeline.template_path if isinstance(pipeline, c.KfpLocalPipelineConfig) else None
