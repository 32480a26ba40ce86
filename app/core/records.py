"""The records that cross the seams and the process boundaries: plain frozen data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def ingest_id_for(name: str, content_hash: str) -> str:
    """An ingest's id: the object's name and its content (content alone decides identity)."""
    return f"{name}@{content_hash[:16]}"


def traffic_bucket(routing_key: str) -> int:
    """Which of 100 traffic buckets a routing key (a card's HMAC id) falls in.

    A stable hash, not Python's salted ``hash()``: every process and both homes put a
    card in the same bucket, so a card keeps being scored by one version while a
    canary runs. Keys in buckets below the canary's percent go to the canary.
    """
    digest = hashlib.sha256(routing_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class IngestResult:
    ingest_id: str
    source_object: str
    rows_loaded: int
    already_loaded: bool
    content_hash: str = ""


@dataclass(frozen=True)
class IngestRecord:
    """Lineage of one loaded file: which content, under which name, how many rows."""

    ingest_id: str
    source_object: str
    content_hash: str
    rows: int
    loaded_at: str  # ISO-8601 UTC
    generation: int = 0


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    table: str
    source_ingest_id: str
    source_object: str
    row_count: int
    fraud_count: int
    content_hash: str
    created_at: str  # ISO-8601 UTC


@dataclass(frozen=True)
class SyncInfo:
    snapshot_id: str
    cards: int
    synced_at: str


@dataclass(frozen=True)
class FeatureRecord:
    card_id: str
    card_masked: str
    event_time: float
    features: Mapping[str, float | None]
    feature_timestamp: str
    snapshot_id: str


@dataclass(frozen=True)
class ModelVersion:
    version: str
    snapshot_id: str
    artifact_uri: str
    threshold: float
    metrics: Mapping[str, float]
    params: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # The pipeline run that registered it ("" for versions registered before runs were kept).
    run_name: str = ""


@dataclass(frozen=True)
class Prediction:
    probability: float
    threshold: float
    model_version: str

    @property
    def is_fraud(self) -> bool:
        return self.probability >= self.threshold


@dataclass(frozen=True)
class PipelineResult:
    run_name: str
    snapshot_id: str
    deployed: bool
    gate_reason: str
    metrics: Mapping[str, float]
    model_version: str | None
    # Each step's final state ("succeeded", "failed", "skipped"), as the run reported it.
    steps: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFailure:
    """Why a DAG task or a pipeline step failed, handed between processes as data."""

    task: str
    error_class: str
    message: str
    location: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "error_class": self.error_class,
            "message": self.message,
            "location": self.location,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunFailure:
        return cls(
            task=str(data.get("task") or "unknown"),
            error_class=str(data.get("error_class") or "Exception"),
            message=str(data.get("message") or ""),
            location=None if data.get("location") is None else str(data["location"]),
        )


@dataclass(frozen=True)
class LandedObject:
    """An object in the landing zone, as its object-finalize event names it.

    ``generation`` pins the exact version of the object (GCS generations; 0 locally),
    so a file replaced after its event is never read in place of the one announced.
    ``content_hash`` (SHA-256) is known when the announcer computed it (the local
    landing zone does); a GCS notification carries none, and the loader computes it
    while it parses the pinned generation.
    """

    name: str
    uri: str
    content_hash: str | None = None
    generation: int = 0

    @property
    def ingest_id(self) -> str:
        if self.content_hash is None:
            raise ValueError(f"{self.name}: no content hash yet; it is known once parsed")
        return ingest_id_for(self.name, self.content_hash)


@dataclass(frozen=True)
class LocalCopy:
    """A readable local copy of one landed object, and exactly what was read.

    ``landed`` is the object with the generation actually read (the live one's, when
    the event named none) and, when the copier computed it, the SHA-256 of its bytes.
    """

    path: Path
    landed: LandedObject


# Deliveries of one landing event before a transient failure counts as final.
MAX_DELIVERIES = 5
# Redelivery backoff: 1 s after the first failed delivery, doubling, at most 30 s.
FIRST_REDELIVERY_SECONDS = 1.0
MAX_REDELIVERY_SECONDS = 30.0


def redelivery_delay(delivery_attempt: int) -> float:
    """Seconds to wait before delivering again an event whose ``delivery_attempt``-th
    delivery failed transiently: 1, 2, 4, 8, 16, then 30 s at most.

    Both homes use it: the local queue writes it as the event's ``next_delivery``,
    Pub/Sub gets it as the message's new ack deadline.
    """
    exponent = max(delivery_attempt, 1) - 1
    return min(FIRST_REDELIVERY_SECONDS * 2.0**exponent, MAX_REDELIVERY_SECONDS)


@dataclass(frozen=True)
class LandingClaim:
    """One delivery of an object-finalize event, held by one consumer until acked.

    ``event_id`` names the event itself, the same across its deliveries (``ack_id``
    names one delivery): dead letters are listed and re-queued by it.
    """

    ack_id: str
    landed: LandedObject
    delivery_attempt: int = 1
    event_id: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """A landing event no consumer will deliver again until someone re-queues it.

    ``reason`` is the last failure: the file's own fault (an ``InvalidInputError`` with
    its ``file:line:column``), or a transient one that outlasted ``MAX_DELIVERIES``.
    """

    event_id: str
    landed: LandedObject
    delivery_attempts: int
    reason: RunFailure
    dead_lettered_at: str  # ISO-8601 UTC

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "object_name": self.landed.name,
            "uri": self.landed.uri,
            "content_hash": self.landed.content_hash,
            "generation": self.landed.generation,
            "delivery_attempts": self.delivery_attempts,
            "reason": self.reason.as_dict(),
            "dead_lettered_at": self.dead_lettered_at,
        }
