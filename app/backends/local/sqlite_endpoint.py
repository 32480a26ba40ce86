"""The local endpoint: a deployment pointer in SQLite and the live model in memory.

It names versions; the registry owns them, and the endpoint loads each through the
registry port, as a Vertex endpoint serves versions of a Model Registry model.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from app.backends.local.sqlite_db import ENDPOINT_SCHEMA, connect, ensure_schema, utc_now
from app.core.config import LocalEndpointConfig
from app.core.errors import BackendUnavailableError, NotFoundError
from app.core.model.artifact import FraudModel
from app.core.model.features import feature_row
from app.core.ports import ModelRegistry, Services
from app.core.records import ModelVersion, Prediction


@dataclass(frozen=True)
class Deployment:
    version: str
    previous: str | None
    deployed_at: str


class SQLiteModelEndpoint:
    def __init__(self, db_path: Path, registry: ModelRegistry) -> None:
        self.db_path = db_path
        self.registry = registry
        ensure_schema(db_path, ENDPOINT_SCHEMA)
        # The scoring function may serve requests on several threads.
        self._lock = threading.Lock()
        self._loaded: tuple[str, FraudModel] | None = None

    @classmethod
    def from_config(cls, section: LocalEndpointConfig, backends: Services) -> Self:
        return cls(section.path, backends.registry)

    def deploy(self, version: ModelVersion) -> None:
        """Point the endpoint at ``version``; the old pointer stays unless this fully succeeds."""
        registered = self.registry.get(version.version)
        # Load before switching: the pointer must never name a model that cannot score.
        self._model(registered)
        with connect(self.db_path) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                current = connection.execute(
                    "SELECT version FROM deployment WHERE slot = 'live'"
                ).fetchone()
                now = utc_now()
                connection.execute(
                    "INSERT INTO deployment (slot, version, deployed_at) VALUES ('live', ?, ?) "
                    "ON CONFLICT (slot) DO UPDATE SET version = excluded.version, "
                    "deployed_at = excluded.deployed_at",
                    (registered.version, now),
                )
                connection.execute(
                    "INSERT INTO deployment_history (version, previous, deployed_at) "
                    "VALUES (?, ?, ?)",
                    (registered.version, current["version"] if current else None, now),
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def deployed(self) -> ModelVersion | None:
        with connect(self.db_path) as connection:
            row = connection.execute(
                "SELECT version FROM deployment WHERE slot = 'live'"
            ).fetchone()
        if row is None:
            return None
        try:
            return self.registry.get(row["version"])
        except NotFoundError as exc:
            # Not the caller's 404: the endpoint and its registry disagree.
            raise BackendUnavailableError(
                f"the endpoint serves {row['version']}, which the registry does not hold"
            ) from exc

    def history(self) -> list[Deployment]:
        """Every deployment, oldest first."""
        with connect(self.db_path) as connection:
            rows = connection.execute(
                "SELECT version, previous, deployed_at FROM deployment_history ORDER BY id"
            ).fetchall()
        return [Deployment(r["version"], r["previous"], r["deployed_at"]) for r in rows]

    def predict(self, features: Mapping[str, float | None]) -> Prediction:
        row = feature_row(features)
        current = self.deployed()
        if current is None:
            raise BackendUnavailableError("no model is deployed")
        probability = float(self._model(current).predict(row)[0])
        return Prediction(
            probability=probability, threshold=current.threshold, model_version=current.version
        )

    def _model(self, version: ModelVersion) -> FraudModel:
        """The loaded booster for ``version``; only the latest one is kept in memory."""
        with self._lock:
            if self._loaded is not None and self._loaded[0] == version.version:
                return self._loaded[1]
            model = self.registry.load(version)
            self._loaded = (version.version, model)
            return model
