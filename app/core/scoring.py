"""Score a card: validate the number, fetch its online features, ask the deployed model.

Shared by the HTTP function and the CLI, so both answer alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.core import backends, cards
from app.core.config import RuntimeConfig
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.ports import ModelEndpoint, OnlineStore
from app.core.secrets import card_key


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
    def __init__(self, cfg: RuntimeConfig) -> None:
        self._cfg = cfg
        self._key: bytes | None = None
        self._store: OnlineStore = backends.online_store(cfg)
        self._endpoint: ModelEndpoint = backends.endpoint(cfg)

    def score(self, raw_card_number: object) -> Score:
        start = time.perf_counter()
        number = cards.normalize(raw_card_number)
        masked = cards.mask(number)
        if self._key is None:
            # Read after validation: a bad request is a 400 even when the key is missing.
            self._key = card_key(self._cfg)
        try:
            record = self._store.fetch(cards.card_id(number, self._key))
        except NotFoundError as exc:
            raise NotFoundError(f"card {masked} has no features in the online store") from exc
        try:
            prediction = self._endpoint.predict(record.features)
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
