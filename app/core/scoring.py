"""Score a card: validate the number, fetch its online features, ask the deployed model.

Shared by the HTTP function and the CLI, so both answer alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.core import cards
from app.core.errors import (
    BackendUnavailableError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
)
from app.core.ports import CardKeySource, ModelEndpoint, OnlineStore, Services


@dataclass(frozen=True)
class Score:
    card: str  # masked
    fraud_probability: float
    is_fraud: bool
    threshold: float
    model_version: str
    features_as_of: str
    snapshot_id: str
    latency_ms: float

    def as_response(self) -> dict[str, Any]:
        return {
            "card": self.card,
            "fraud_probability": round(self.fraud_probability, 6),
            "is_fraud": self.is_fraud,
            "threshold": round(self.threshold, 6),
            "model_version": self.model_version,
            "features_as_of": self.features_as_of,
            "snapshot_id": self.snapshot_id,
        }


class Scorer:
    def __init__(
        self, *, store: OnlineStore, endpoint: ModelEndpoint, card_key: CardKeySource
    ) -> None:
        self._key_source = card_key
        self._key: bytes | None = None
        self._store = store
        self._endpoint = endpoint

    @classmethod
    def from_services(cls, services: Services) -> Scorer:
        return cls(
            store=services.online_store, endpoint=services.endpoint, card_key=services.card_key
        )

    def warm(self) -> None:
        """Open what a request needs (key, store, model) now, so the first request is as
        fast as the rest: a readiness check.

        Every part is tried, so what can be opened is open, then the first part's error
        is raised (the project error it raised: ConfigError for a missing key,
        BackendUnavailableError for a store never synced or no model deployed).
        """
        first: FraudMlopsError | None = None
        try:
            if self._key is None:
                self._key = self._key_source.key()
        except FraudMlopsError as exc:
            first = exc
        for part in (self._store.warm, self._endpoint.warm):
            try:
                part()
            except FraudMlopsError as exc:
                first = first or exc
        if first is not None:
            raise first

    def score(self, raw_card_number: object) -> Score:
        start = time.perf_counter()
        number = cards.normalize(raw_card_number)
        masked = cards.mask(number)
        if self._key is None:
            # Read after validation: a bad request is a 400 even when the key is missing.
            self._key = self._key_source.key()
        card_id = cards.card_id(number, self._key)
        try:
            record = self._store.fetch(card_id)
        except NotFoundError as exc:
            raise NotFoundError(f"card {masked} has no features in the online store") from exc
        try:
            # Routed by the card's keyed id: a card sticks to one version during a canary,
            # and the number itself never reaches the endpoint.
            prediction = self._endpoint.predict(record.features, routing_key=card_id)
        except InvalidInputError as exc:
            # The stored features do not fit the model: our fault, not the caller's.
            raise BackendUnavailableError(f"features of {masked} do not fit the model") from exc
        return Score(
            card=masked,
            fraud_probability=prediction.probability,
            is_fraud=prediction.is_fraud,
            threshold=prediction.threshold,
            model_version=prediction.model_version,
            features_as_of=record.feature_timestamp,
            snapshot_id=record.snapshot_id,
            latency_ms=(time.perf_counter() - start) * 1000,
        )
