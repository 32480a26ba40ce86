"""Local model registry and endpoint on one SQLite file plus a directory of model versions.

The registry owns ``model_versions`` and the artifact copies; the endpoint owns the
deployment pointer and its history. Both are safe to use from several processes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import (
    BackendUnavailableError,
    InvalidInputError,
    NotFoundError,
)
from app.core.model.artifact import FraudModel, load_model
from app.core.model.features import feature_row
from app.core.ports import ModelVersion, Prediction
from app.core.registry.db import (
    connect,
    ensure_schema,
    read_version,
    to_model_version,
    utc_now,
    version_name,
)


@dataclass(frozen=True)
class Deployment:
    version: str
    previous: str | None
    deployed_at: str


class LocalModelRegistry:
    def __init__(self, db_path: Path, artifacts_dir: Path) -> None:
        self.db_path = db_path
        self.artifacts_dir = artifacts_dir
        ensure_schema(db_path)

    def register(
        self,
        *,
        artifact_path: Path,
        snapshot_id: str,
        threshold: float,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
    ) -> ModelVersion:
        """Copy the model directory into ``artifacts_dir/<version>`` as the next version."""
        if not artifact_path.is_dir():
            raise InvalidInputError(
                "a model artifact must be a model directory", location=str(artifact_path)
            )
        metrics_json = _to_json(dict(metrics), "metrics")
        params_json = _to_json(dict(params), "params")
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        # Copy outside the lock (it can be slow), under a name no reader looks at.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.artifacts_dir))
        try:
            shutil.copytree(artifact_path, staging, dirs_exist_ok=True)
            staging.chmod(0o755)
            return self._commit(staging, snapshot_id, threshold, metrics_json, params_json)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _commit(
        self, staging: Path, snapshot_id: str, threshold: float, metrics_json: str, params_json: str
    ) -> ModelVersion:
        with connect(self.db_path) as connection:
            # IMMEDIATE takes the write lock now, so two registrations never pick the same number.
            connection.execute("BEGIN IMMEDIATE")
            target: Path | None = None
            try:
                (seq,) = connection.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM model_versions"
                ).fetchone()
                version = version_name(seq)
                target = self.artifacts_dir / version
                if target.exists():
                    # Only a registration that died between rename and commit leaves this.
                    shutil.rmtree(target)
                os.rename(staging, target)
                created_at = utc_now()
                connection.execute(
                    "INSERT INTO model_versions (seq, version, snapshot_id, artifact_uri, "
                    "threshold, metrics_json, params_json, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        seq,
                        version,
                        snapshot_id,
                        str(target.resolve()),
                        float(threshold),
                        metrics_json,
                        params_json,
                        created_at,
                    ),
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                if target is not None and target.exists() and not staging.exists():
                    shutil.rmtree(target, ignore_errors=True)
                raise
        return self.get(version)

    def get(self, version: str) -> ModelVersion:
        return read_version(self.db_path, version)

    def list_versions(self) -> list[ModelVersion]:
        with connect(self.db_path) as connection:
            rows = connection.execute("SELECT * FROM model_versions ORDER BY seq").fetchall()
        return [to_model_version(row) for row in rows]


class LocalModelEndpoint:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        ensure_schema(db_path)
        # The scoring function may serve requests on several threads.
        self._lock = threading.Lock()
        self._loaded: tuple[str, FraudModel] | None = None

    def deploy(self, version: ModelVersion) -> None:
        """Point the endpoint at ``version``; the old pointer stays unless this fully succeeds."""
        registered = self._registered(version.version)
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
                "SELECT m.* FROM deployment AS d JOIN model_versions AS m USING (version) "
                "WHERE d.slot = 'live'"
            ).fetchone()
        return None if row is None else to_model_version(row)

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

    def _registered(self, version: str) -> ModelVersion:
        return read_version(self.db_path, version)

    def _model(self, version: ModelVersion) -> FraudModel:
        """The loaded booster for ``version``; only the latest one is kept in memory."""
        with self._lock:
            if self._loaded is not None and self._loaded[0] == version.version:
                return self._loaded[1]
            try:
                model = load_model(Path(version.artifact_uri))
            except (NotFoundError, InvalidInputError, OSError) as exc:
                raise BackendUnavailableError(
                    f"model {version.version} at {version.artifact_uri} cannot be loaded: {exc}"
                ) from exc
            self._loaded = (version.version, model)
            return model


def _to_json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be JSON numbers and strings: {exc}") from exc
