"""The local endpoint: a traffic split in SQLite and the versions it serves in memory.

It names versions; the registry owns them, and the endpoint loads each through the
registry port, as a Vertex endpoint serves versions of a Model Registry model. Up to
two versions serve at once: the champion and, while one is tried, a canary with a
share of traffic; a card is routed by a stable hash of its id, so it keeps being
scored by one version for as long as the split stands.

Every change of the split (deploy, promote, rollback) is one ``BEGIN IMMEDIATE``
transaction that reads the split and writes the new one, so concurrent writers in
other processes (two pipeline runs, an operator's rollback) serialise instead of
overwriting each other.

Scoring never queries a database per request: the split and its loaded models are one
object in memory, swapped whole when the split changes, and a request takes one
reference to it, so its version, threshold and probability always come from one
model. Whether the split changed is asked of SQLite's ``PRAGMA data_version`` on a
kept connection (a few microseconds: it moves whenever another connection commits to
the file), on every request by default, or at most every ``refresh_seconds``.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from app.backends.local.sqlite_db import (
    ENDPOINT_SCHEMA,
    KeptConnections,
    connect,
    ensure_schema,
    utc_now,
    write_transaction,
)
from app.core.config import LocalEndpointConfig
from app.core.errors import BackendUnavailableError, ConfigError, ConflictError, NotFoundError
from app.core.model.artifact import FraudModel
from app.core.model.features import feature_row
from app.core.ports import ModelRegistry, Services
from app.core.records import ModelVersion, Prediction, traffic_bucket


@dataclass(frozen=True)
class Deployment:
    """One change of the split: ``version`` got ``percent`` of traffic from ``previous``."""

    version: str
    previous: str | None
    deployed_at: str
    action: str = "deploy"  # deploy | canary | promote | rollback
    percent: int = 100


@dataclass(frozen=True)
class _Split:
    champion: str | None = None
    canary: str | None = None
    canary_percent: int = 0

    def shares(self) -> dict[str, int]:
        if self.champion is None:
            return {}
        if self.canary is None:
            return {self.champion: 100}
        return {self.champion: 100 - self.canary_percent, self.canary: self.canary_percent}

    def route(self, routing_key: str) -> str | None:
        if self.canary is not None and traffic_bucket(routing_key) < self.canary_percent:
            return self.canary
        return self.champion


@dataclass(frozen=True)
class _Serving:
    """A split and the loaded models of its versions: what a request scores with."""

    split: _Split
    models: Mapping[str, tuple[ModelVersion, FraudModel]]


class SQLiteModelEndpoint:
    def __init__(
        self,
        db_path: Path,
        registry: ModelRegistry,
        *,
        canary_traffic_percent: int = 0,
        refresh_seconds: float = 0.0,
    ) -> None:
        if not 0 <= canary_traffic_percent <= 100:
            raise ConfigError(
                f"canary_traffic_percent must be 0..100, not {canary_traffic_percent}"
            )
        if not refresh_seconds >= 0:
            raise ConfigError(f"refresh_seconds must be 0 or more, not {refresh_seconds}")
        self.db_path = db_path
        self.registry = registry
        self.canary_traffic_percent = canary_traffic_percent
        self.refresh_seconds = refresh_seconds
        ensure_schema(db_path, ENDPOINT_SCHEMA)
        # The scoring function may serve requests on several threads.
        self._lock = threading.RLock()
        # version -> (its registry record, its model): the versions of the split last seen.
        self._loaded: dict[str, tuple[ModelVersion, FraudModel]] = {}
        self._readers = KeptConnections(db_path, rows=True)
        self._serving_now: _Serving | None = None
        self._checked_at = -math.inf  # time.monotonic() of the last change check

    @classmethod
    def from_config(cls, section: LocalEndpointConfig, backends: Services) -> Self:
        return cls(
            section.path,
            backends.registry,
            canary_traffic_percent=section.canary_traffic_percent,
            refresh_seconds=section.refresh_seconds,
        )

    def deploy(self, version: ModelVersion, *, expected_champion: str | None) -> dict[str, int]:
        """Put ``version`` in at the canary share, the champion keeping the rest; see
        :meth:`app.core.ports.ModelEndpoint.deploy`. The old split stays unless this
        fully succeeds."""
        registered = self.registry.get(version.version)
        # Load before switching: the split must never name a model that cannot score.
        self._serving(registered.version)
        name = registered.version
        share = self.canary_traffic_percent
        with connect(self.db_path) as connection, write_transaction(connection):
            current = _read_split(connection)
            full = current.champion is None or share in (0, 100)
            target = _Split(name) if full else _Split(current.champion, name, share)
            already = current == target if full else name in (current.champion, current.canary)
            if already:
                return current.shares()
            if current.champion != expected_champion:
                raise ConflictError(
                    f"the endpoint's champion is {current.champion or 'nothing'}, not "
                    f"{expected_champion or 'nothing'} as its gate saw: another change "
                    f"came first, so {name} is not deployed"
                )
            _write_split(connection, target)
            _record(
                connection,
                Deployment(
                    name,
                    current.champion,
                    utc_now(),
                    action="deploy" if full else "canary",
                    percent=100 if full else share,
                ),
            )
        self._checked_at = -math.inf  # this process changed it: no waiting to see it
        return target.shares()

    def promote(self) -> dict[str, int]:
        with connect(self.db_path) as connection, write_transaction(connection):
            current = _read_split(connection)
            if current.canary is None:
                held = f"; {current.champion} has all traffic" if current.champion else ""
                raise ConflictError(f"no canary to promote{held}")
            target = _Split(current.canary)
            _write_split(connection, target)
            _record(
                connection,
                Deployment(current.canary, current.champion, utc_now(), action="promote"),
            )
        self._checked_at = -math.inf
        return target.shares()

    def rollback(self) -> dict[str, int]:
        seen = self._split()
        if seen.champion is None:
            raise ConflictError("nothing is deployed: nothing to roll back")
        if seen.canary is not None:
            restored, dropped = seen.champion, seen.canary
        else:
            previous = self._replaced_by(seen.champion)
            if previous is None:
                raise ConflictError(
                    f"{seen.champion} was the first version deployed: nothing to roll back to"
                )
            # Load before switching, outside the lock: loading can take a while.
            self._serving(self.registry.get(previous).version)
            restored, dropped = previous, seen.champion
        target = _Split(restored)
        with connect(self.db_path) as connection, write_transaction(connection):
            if _read_split(connection) != seen:
                raise ConflictError("the traffic split changed while rolling back; try again")
            _write_split(connection, target)
            _record(connection, Deployment(restored, dropped, utc_now(), action="rollback"))
        self._checked_at = -math.inf
        return target.shares()

    def _split(self) -> _Split:
        """The split as the file holds it now (not the one being served, perhaps older)."""
        with connect(self.db_path) as connection:
            return _read_split(connection)

    def traffic(self) -> dict[str, int]:
        return self._split().shares()

    def deployed(self) -> ModelVersion | None:
        champion = self._split().champion
        return None if champion is None else self._registered(champion)

    def history(self) -> list[Deployment]:
        """Every change of the split, oldest first."""
        with connect(self.db_path) as connection:
            rows = connection.execute(
                "SELECT version, previous, deployed_at, action, percent "
                "FROM deployment_history ORDER BY id"
            ).fetchall()
        return [
            Deployment(r["version"], r["previous"], r["deployed_at"], r["action"], r["percent"])
            for r in rows
        ]

    def predict(self, features: Mapping[str, float | None], *, routing_key: str) -> Prediction:
        row = feature_row(features)
        # One reference, taken once: a switch meanwhile cannot mix two versions here.
        serving = self._current()
        chosen = serving.split.route(routing_key)
        if chosen is None:
            raise BackendUnavailableError("no model is deployed")
        # One version's record and model together: its threshold never meets another's score.
        version, model = serving.models[chosen]
        probability = model.predict_one(row)
        return Prediction(
            probability=probability, threshold=version.threshold, model_version=version.version
        )

    def warm(self) -> None:
        """Read the split and load its models now, and set up this thread's predict
        path; BackendUnavailableError when nothing is deployed or it cannot be loaded."""
        serving = self._current()
        if serving.split.champion is None:
            raise BackendUnavailableError("no model is deployed")
        for _, model in serving.models.values():
            model.warm()

    def _current(self) -> _Serving:
        """The split in force and its models, checked for a change as configured."""
        serving = self._serving_now
        now = time.monotonic()
        if serving is not None and now - self._checked_at < self.refresh_seconds:
            return serving
        kept = self._readers.get()
        if kept is None:
            raise BackendUnavailableError(f"{self.db_path.name} does not exist")
        try:
            # Moves whenever another connection commits to the file; this one never writes.
            data_version = kept.connection.execute("PRAGMA data_version").fetchall()[0][0]
            if serving is not None and kept.mark == data_version:
                self._checked_at = now
                return serving
            with self._lock:
                # Read under the lock: what is installed was read later than anything
                # installed before it, so a slow thread never puts an older split back.
                split = _read_split(kept.connection)
                serving = self._serving_now
                if serving is None or serving.split != split:
                    # All of the split's models load, or (on error) nothing changes.
                    shares = split.shares()
                    models = {name: self._serving(name, keep=shares) for name in shares}
                    serving = _Serving(split, models)
                    self._serving_now = serving
        except sqlite3.Error as exc:
            self._readers.drop()
            raise BackendUnavailableError(f"{self.db_path.name}: {exc}") from exc
        # The version seen before the read: a commit in between is looked at again next time.
        kept.mark = data_version
        self._checked_at = now
        return serving

    def _replaced_by(self, champion: str) -> str | None:
        """The version ``champion`` took over from when it last became champion."""
        with connect(self.db_path) as connection:
            row = connection.execute(
                # The rows after which their version had all traffic as the new champion.
                "SELECT previous FROM deployment_history WHERE version = ? "
                "AND action IN ('deploy', 'promote') ORDER BY id DESC LIMIT 1",
                (champion,),
            ).fetchone()
        return None if row is None else row["previous"]

    def _registered(self, name: str) -> ModelVersion:
        try:
            return self.registry.get(name)
        except NotFoundError as exc:
            # Not the caller's 404: the endpoint and its registry disagree.
            raise BackendUnavailableError(
                f"the endpoint serves {name}, which the registry does not hold"
            ) from exc

    def _serving(
        self, name: str, *, keep: Mapping[str, int] | None = None
    ) -> tuple[ModelVersion, FraudModel]:
        """``name``'s record and loaded model, loaded once and kept while it serves.

        ``keep`` is the split just read: versions no longer in it are let go, so memory
        holds at most the two that serve (plus one being deployed).
        """
        with self._lock:
            if keep is not None:
                for gone in set(self._loaded) - set(keep):
                    del self._loaded[gone]
            loaded = self._loaded.get(name)
            if loaded is None:
                version = self._registered(name)
                # A registered version's record and artifact never change: safe to keep.
                loaded = (version, self.registry.load(version))
                self._loaded[name] = loaded
            return loaded


def _read_split(connection: sqlite3.Connection) -> _Split:
    # fetchall: on a kept connection a half-read statement would hold its snapshot open.
    rows = connection.execute(
        "SELECT version, canary, canary_percent FROM deployment WHERE slot = 'live'"
    ).fetchall()
    if not rows:
        return _Split()
    row = rows[0]
    return _Split(row["version"], row["canary"], row["canary_percent"] if row["canary"] else 0)


def _write_split(connection: sqlite3.Connection, split: _Split) -> None:
    connection.execute(
        "INSERT INTO deployment (slot, version, deployed_at, canary, canary_percent) "
        "VALUES ('live', ?, ?, ?, ?) ON CONFLICT (slot) DO UPDATE SET "
        "version = excluded.version, deployed_at = excluded.deployed_at, "
        "canary = excluded.canary, canary_percent = excluded.canary_percent",
        (split.champion, utc_now(), split.canary, split.canary_percent),
    )


def _record(connection: sqlite3.Connection, change: Deployment) -> None:
    connection.execute(
        "INSERT INTO deployment_history (version, previous, deployed_at, action, percent) "
        "VALUES (?, ?, ?, ?, ?)",
        (change.version, change.previous, change.deployed_at, change.action, change.percent),
    )
