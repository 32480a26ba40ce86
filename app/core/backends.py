"""The one place where a config ``kind`` becomes an implementation.

GCP implementations (and their client libraries) are imported lazily, inside
the branch that needs them, so the local install never loads them.
"""

from __future__ import annotations

from app.core import config as c
from app.core.errors import BackendUnavailableError
from app.core.ports import (
    LandingZone,
    ModelEndpoint,
    ModelRegistry,
    OnlineStore,
    PipelineRunner,
    Warehouse,
)


def _not_yet(role: str, kind: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"{role} kind {kind!r} is configured but its backend is not part of this build yet; "
        "the GCP backends land behind this same seam"
    )


def warehouse(cfg: c.RuntimeConfig) -> Warehouse:
    wh = cfg.warehouse
    if isinstance(wh, c.DuckDBWarehouseConfig):
        from app.core.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(wh.path)
    raise _not_yet("warehouse", wh.kind)


def online_store(cfg: c.RuntimeConfig) -> OnlineStore:
    st = cfg.online_store
    if isinstance(st, c.SQLiteOnlineStoreConfig):
        from app.core.online_store.sqlite import SQLiteOnlineStore

        return SQLiteOnlineStore(st.path)
    raise _not_yet("online store", st.kind)


def registry(cfg: c.RuntimeConfig) -> ModelRegistry:
    reg = cfg.registry
    if isinstance(reg, c.LocalModelRegistryConfig):
        from app.core.registry.local import LocalModelRegistry

        return LocalModelRegistry(reg.path, reg.artifacts_dir)
    raise _not_yet("model registry", reg.kind)


def endpoint(cfg: c.RuntimeConfig) -> ModelEndpoint:
    reg = cfg.registry
    if isinstance(cfg.endpoint, c.LocalEndpointConfig) and isinstance(
        reg, c.LocalModelRegistryConfig
    ):
        from app.core.registry.local import LocalModelEndpoint

        return LocalModelEndpoint(reg.path)
    raise _not_yet("model endpoint", cfg.endpoint.kind)


def pipeline_runner(cfg: c.RuntimeConfig) -> PipelineRunner:
    if isinstance(cfg.pipeline, c.KfpLocalPipelineConfig):
        from app.pipeline.local_runner import KfpLocalPipelineRunner

        return KfpLocalPipelineRunner(cfg)
    raise _not_yet("pipeline runner", cfg.pipeline.kind)


def landing_zone(cfg: c.RuntimeConfig) -> LandingZone:
    if isinstance(cfg.landing, c.LocalLandingConfig):
        from app.core.landing import LocalLandingZone

        return LocalLandingZone(cfg.landing.path)
    raise _not_yet("landing zone", cfg.landing.kind)
