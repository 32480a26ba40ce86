"""The seams: one small Protocol per role.

Implementations are named ``<Tech><Role>`` (``DuckDBWarehouse``, ``SQLiteOnlineStore``)
and live in :mod:`app.backends`; the composition root there is the only code that
turns a config ``kind`` into one of them. Everything above the seams (the DAG tasks in
:mod:`app.core.flow`, the pipeline steps, the function) sees only these roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from app.core.records import (
    DeadLetter,
    FeatureRecord,
    IngestRecord,
    IngestResult,
    LandedObject,
    LandingClaim,
    LocalCopy,
    ModelVersion,
    PipelineResult,
    Prediction,
    RunFailure,
    SnapshotInfo,
    SyncInfo,
)

if TYPE_CHECKING:
    from app.core.config import RuntimeConfig
    from app.core.model.artifact import FraudModel


class Warehouse(Protocol):
    """Loads, transforms and snapshots; writes its lineage in the same transactions."""

    def load_raw(
        self,
        frame: pd.DataFrame,
        *,
        ingest_id: str,
        source_object: str,
        content_hash: str,
        generation: int = 0,
    ) -> IngestResult:
        """Append ``frame`` to raw, all rows or none; known content adds nothing.

        The ingest record (with the object's ``generation``) is written in the same
        transaction as the rows.

        ``source_time`` is the file's own clock; the warehouse places the file after the
        latest loaded transaction to give ``event_time``.
        """
        ...

    def build_training_table(self) -> int:
        """Rebuild the training table (point-in-time card features) from raw; return its rows."""
        ...

    def snapshot_training(self, *, ingest_id: str, source_object: str) -> SnapshotInfo:
        """Freeze the training table; the same ``ingest_id`` returns its existing snapshot."""
        ...

    def read_snapshot(self, snapshot_id: str) -> pd.DataFrame: ...

    def snapshot_content_hash(self, snapshot_id: str) -> str:
        """Hash recomputed from the stored rows, to prove a snapshot never changed."""
        ...

    def latest_card_features(self, snapshot_id: str) -> pd.DataFrame:
        """One row per card: the features of its latest transaction in the snapshot."""
        ...

    def table_counts(self) -> dict[str, int]: ...


class Lineage(Protocol):
    """What was loaded, snapshotted and trained, queried by id and by "latest"."""

    def ingest_by_hash(self, content_hash: str) -> IngestRecord | None:
        """The ingest that loaded this content, under whatever name, if any did."""
        ...

    def ingest_by_object(self, source_object: str, generation: int) -> IngestRecord | None:
        """The ingest of exactly this version of an object, if it was loaded."""
        ...

    def snapshot(self, snapshot_id: str) -> SnapshotInfo:
        """Raise NotFoundError for an unknown id."""
        ...

    def snapshot_for_ingest(self, ingest_id: str) -> SnapshotInfo | None: ...

    def latest_snapshot(self) -> SnapshotInfo | None: ...

    def snapshots(self) -> list[SnapshotInfo]:
        """Oldest first."""
        ...

    def record_training_run(self, result: PipelineResult) -> None:
        """Which pipeline run trained on which snapshot, and what it decided."""
        ...

    def training_runs(self, snapshot_id: str | None = None) -> list[PipelineResult]:
        """Oldest first."""
        ...

    def latest_training_run(self) -> PipelineResult | None: ...


class OnlineStore(Protocol):
    def sync(self, features: pd.DataFrame, *, snapshot_id: str) -> SyncInfo:
        """Replace the whole feature view at once; readers see the old or the new, never half."""
        ...

    def fetch(self, card_id: str) -> FeatureRecord:
        """Raise NotFoundError for an unknown card, BackendUnavailableError if the store is down."""
        ...

    def warm(self) -> None:
        """Open what :meth:`fetch` needs (connections, clients) now, so the first fetch
        is as fast as the rest; BackendUnavailableError when the store cannot serve yet."""
        ...

    def last_sync(self) -> SyncInfo | None: ...


class ModelRegistry(Protocol):
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
        """Record the artifact as the next version, trained on ``snapshot_id`` by ``run_name``.

        Idempotent per (``snapshot_id``, ``run_name``): a retried step of the same run
        gets the version it registered before, never a second copy.
        """
        ...

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
        """Record a model another service trained (AutoML's, named by its resource) as
        the next version, idempotent like :meth:`register`.

        Raise ConfigError where the registry cannot hold such a model (the local one).
        """
        ...

    def get(self, version: str) -> ModelVersion:
        """Raise NotFoundError for an unregistered version."""
        ...

    def list_versions(self) -> list[ModelVersion]:
        """Oldest first, in the registry's own order."""
        ...

    def versions_for_snapshot(self, snapshot_id: str) -> list[ModelVersion]:
        """Versions trained on this snapshot, oldest first."""
        ...

    def is_newer(self, version: ModelVersion, than: ModelVersion) -> bool:
        """Registration order, which only the registry knows (names are its own)."""
        ...

    def score(self, version: ModelVersion, frame: pd.DataFrame) -> np.ndarray:
        """The version's fraud probabilities for ``frame``'s rows, in row order, wherever
        the version runs: loaded here, or a batch prediction for a model only Vertex AI
        can run (AutoML's). How the gate judges any champion on the candidate's rows.

        Raise BackendUnavailableError when the version cannot score.
        """
        ...

    def load(self, version: ModelVersion) -> FraudModel:
        """The version's model, read from wherever its artifact lives.

        Raise BackendUnavailableError when the artifact cannot be read or loaded.
        """
        ...


class ModelEndpoint(Protocol):
    """Serves up to two versions: the champion and, while one is tried, a canary.

    Every change of the split is one atomic step; each returns the split it made.
    """

    def deploy(self, version: ModelVersion, *, expected_champion: str | None) -> dict[str, int]:
        """Put ``version`` in at the configured canary share (all traffic when that is 0
        or 100, or when nothing is deployed), the champion keeping the rest; a canary
        it replaces is undeployed.

        Compare-and-swap: when the live champion is not ``expected_champion`` (the one
        the gate judged against; None for "nothing deployed"), raise ConflictError and
        change nothing, so two runs can never both promote. A version already serving
        where this deploy would put it is left as it is (a retried step succeeds).
        """
        ...

    def deployed(self) -> ModelVersion | None:
        """The champion (the version with the larger share), None when nothing is deployed."""
        ...

    def traffic(self) -> dict[str, int]:
        """Version -> percent of traffic, champion first; empty when nothing is deployed."""
        ...

    def promote(self) -> dict[str, int]:
        """The canary takes all traffic and becomes champion; ConflictError without one."""
        ...

    def rollback(self) -> dict[str, int]:
        """Back to the previous version at 100%: drop the canary, or, without one,
        redeploy the version the champion replaced. ConflictError if there is none.
        """
        ...

    def predict(self, features: Mapping[str, float | None], *, routing_key: str) -> Prediction:
        """Score with the version ``routing_key`` routes to (the same key, the same version,
        while the split stands); the prediction names that version.

        Raise BackendUnavailableError when no model is deployed or it cannot be loaded.
        """
        ...

    def warm(self) -> None:
        """Load what :meth:`predict` needs (the split, its models, clients) now, so the
        first prediction is as fast as the rest; BackendUnavailableError when no model
        is deployed or it cannot be loaded."""
        ...


class PipelineRunner(Protocol):
    def run(self, *, snapshot_id: str, run_name: str) -> PipelineResult:
        """Run the training pipeline to its end.

        A failed run raises PipelineFailedError whose ``failure`` names the step and the
        project error it raised, read from the run's own outputs, not from its logs.
        """
        ...


class LandingZone(Protocol):
    @property
    def location(self) -> str:
        """Where objects land, for people (a folder, ``gs://bucket``)."""
        ...

    def land(self, source: Path, *, name: str | None = None) -> LandedObject:
        """Put a file in the landing area atomically and announce it (object-finalize)."""
        ...

    def local_copy(self, landed: LandedObject) -> AbstractContextManager[LocalCopy]:
        """A local readable copy of exactly the announced version of ``landed``, for
        the ``with`` block only: a copy holds full card numbers, so it does not outlive
        its reader.

        Raise NotFoundError when that version is gone.
        """
        ...


class LandingEvents(Protocol):
    """The landing zone's object-finalize notifications, with Pub/Sub's pull semantics."""

    def discover(self, *, settle_seconds: float) -> list[LandedObject]:
        """Announce objects that arrived without an event (copied in by other means)."""
        ...

    def pull(self, only: LandedObject | None = None) -> LandingClaim | None:
        """Claim the oldest event that is due (or ``only``'s); None when there is none.

        An event handed back by :meth:`nack` is not due before its ``retry_after``.
        """
        ...

    def ack(self, claim: LandingClaim) -> None:
        """The event's work is done: never deliver it again."""
        ...

    def nack(self, claim: LandingClaim, *, reason: RunFailure, retry_after: float) -> None:
        """The work failed transiently: deliver again, not before ``retry_after`` seconds.

        A claim that has had ``MAX_DELIVERIES`` deliveries is dead-lettered with
        ``reason`` instead, so a failure that never heals is not retried forever.
        """
        ...

    def dead_letter(self, claim: LandingClaim, *, reason: RunFailure) -> None:
        """The work failed for good (the file's own fault): never deliver it again
        unless someone :meth:`requeue` s it; keep ``reason`` with it."""
        ...

    def dead_letter_landed(self, landed: LandedObject, *, reason: RunFailure) -> str:
        """Dead-letter the event of ``landed`` that no claim of this port holds: one its
        consumer settled already, as Composer's trigger acks each message as it pulls
        it, and whose run then failed for good. Keep ``reason`` with it, so
        :meth:`dead_letters` lists it and :meth:`requeue` delivers it again; return
        its event id.
        """
        ...

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered event with its reason, oldest first."""
        ...

    def requeue(self, event_id: str | None = None) -> list[str]:
        """Deliver dead-lettered events again (``event_id``'s, or all), each with a fresh
        count of deliveries; return the ids re-queued. NotFoundError for an unknown id.
        """
        ...

    def recover(self) -> int:
        """Hand back claims whose consumer died (a killed run), as a failed delivery
        with backoff; return how many."""
        ...


class CardKeySource(Protocol):
    def key(self, *, create: bool = False) -> bytes:
        """The card-id HMAC key; only the loader may ``create`` it.

        A reader that made a fresh key would silently key every card differently
        (every lookup a 404, every card's history split), so readers fail instead.
        """
        ...


class Services(Protocol):
    """Every role, built on first use from one config (see :class:`app.backends.Backends`)."""

    @property
    def config(self) -> RuntimeConfig: ...

    @property
    def warehouse(self) -> Warehouse: ...

    @property
    def lineage(self) -> Lineage: ...

    @property
    def online_store(self) -> OnlineStore: ...

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def endpoint(self) -> ModelEndpoint: ...

    @property
    def pipeline_runner(self) -> PipelineRunner: ...

    @property
    def landing(self) -> LandingZone: ...

    @property
    def landing_events(self) -> LandingEvents: ...

    @property
    def card_key(self) -> CardKeySource: ...
