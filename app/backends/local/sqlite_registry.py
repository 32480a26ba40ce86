"""The local model registry: versions in an SQLite file, artifacts in a directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from app.backends.local.sqlite_db import (
    REGISTRY_SCHEMA,
    connect,
    ensure_schema,
    read_version,
    to_model_version,
    utc_now,
    version_name,
)
from app.core.config import LocalModelRegistryConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    NotFoundError,
)
from app.core.model.artifact import FraudModel, load_model
from app.core.records import ModelVersion


class SQLiteModelRegistry:
    def __init__(self, db_path: Path, artifacts_dir: Path) -> None:
        self.db_path = db_path
        self.artifacts_dir = artifacts_dir
        ensure_schema(db_path, REGISTRY_SCHEMA)

    @classmethod
    def from_config(cls, section: LocalModelRegistryConfig, _backends: object) -> Self:
        return cls(section.path, section.artifacts_dir)

    def register(
        self,
        *,
        artifact_path: Path,
        snapshot_id: str,
        run_name: str,
        threshold: float,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
    ) -> ModelVersion:
        """Copy the model directory into ``artifacts_dir/<version>`` as the next version,
        unless this run already registered one for this snapshot: then return that."""
        if not run_name:
            # Without a run name a retried step could not find what it registered.
            raise InvalidInputError("a registration must name its run", location="run_name")
        if not artifact_path.is_dir():
            raise InvalidInputError(
                "a model artifact must be a model directory", location=str(artifact_path)
            )
        metrics_json = _to_json(dict(metrics), "metrics")
        params_json = _to_json(dict(params), "params")
        existing = self._registered_by(snapshot_id, run_name)
        if existing is not None:
            return existing
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        # Copy outside the lock (it can be slow), under a name no reader looks at.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.artifacts_dir))
        try:
            shutil.copytree(artifact_path, staging, dirs_exist_ok=True)
            staging.chmod(0o755)
            return self._commit(
                staging, snapshot_id, run_name, threshold, metrics_json, params_json
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def adopt(
        self,
        *,
        model_resource: str,
        snapshot_id: str,
        run_name: str,
        threshold: float,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
    ) -> ModelVersion:
        raise ConfigError(
            f"{model_resource} is a Vertex AI model: the automl trainer needs the vertex "
            "registry, and the local home trains with the custom trainer"
        )

    def _registered_by(self, snapshot_id: str, run_name: str) -> ModelVersion | None:
        with connect(self.db_path) as connection:
            row = connection.execute(
                "SELECT * FROM model_versions WHERE snapshot_id = ? AND run_name = ?",
                (snapshot_id, run_name),
            ).fetchone()
        return None if row is None else to_model_version(row)

    def _commit(
        self,
        staging: Path,
        snapshot_id: str,
        run_name: str,
        threshold: float,
        metrics_json: str,
        params_json: str,
    ) -> ModelVersion:
        with connect(self.db_path) as connection:
            # IMMEDIATE takes the write lock now, so two registrations never pick the same
            # number, and two attempts of one run at once find each other's row.
            connection.execute("BEGIN IMMEDIATE")
            target: Path | None = None
            try:
                existing = connection.execute(
                    "SELECT version FROM model_versions WHERE snapshot_id = ? AND run_name = ?",
                    (snapshot_id, run_name),
                ).fetchone()
                if existing is not None:
                    # Another attempt of this run got here first: nothing to write.
                    version = str(existing["version"])
                else:
                    (seq,) = connection.execute(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM model_versions"
                    ).fetchone()
                    version = version_name(seq)
                    target = self.artifacts_dir / version
                    if target.exists():
                        # Only a registration that died between rename and commit leaves this.
                        shutil.rmtree(target)
                    os.rename(staging, target)
                    connection.execute(
                        "INSERT INTO model_versions (seq, version, snapshot_id, artifact_uri, "
                        "threshold, metrics_json, params_json, created_at, run_name) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            seq,
                            version,
                            snapshot_id,
                            str(target.resolve()),
                            float(threshold),
                            metrics_json,
                            params_json,
                            utc_now(),
                            run_name,
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

    def versions_for_snapshot(self, snapshot_id: str) -> list[ModelVersion]:
        with connect(self.db_path) as connection:
            rows = connection.execute(
                "SELECT * FROM model_versions WHERE snapshot_id = ? ORDER BY seq", (snapshot_id,)
            ).fetchall()
        return [to_model_version(row) for row in rows]

    def is_newer(self, version: ModelVersion, than: ModelVersion) -> bool:
        return self._seq(version.version) > self._seq(than.version)

    def _seq(self, version: str) -> int:
        with connect(self.db_path) as connection:
            row = connection.execute(
                "SELECT seq FROM model_versions WHERE version = ?", (version,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"model version {version!r} is not registered")
        return int(row["seq"])

    def score(self, version: ModelVersion, frame: pd.DataFrame) -> np.ndarray:
        return self.load(version).score_frame(frame)

    def load(self, version: ModelVersion) -> FraudModel:
        try:
            return load_model(Path(version.artifact_uri))
        except (NotFoundError, InvalidInputError, OSError) as exc:
            raise BackendUnavailableError(
                f"model {version.version} at {version.artifact_uri} cannot be loaded: {exc}"
            ) from exc


def _to_json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be JSON numbers and strings: {exc}") from exc
