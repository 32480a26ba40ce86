"""Scorer.warm: the readiness seam the function calls at start and from its health route."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from app.core.errors import BackendUnavailableError, ConfigError
from app.core.records import FeatureRecord, Prediction
from app.core.scoring import Scorer


class _Key:
    def __init__(self, *, missing: bool = False) -> None:
        self.missing = missing
        self.calls = 0

    def key(self, *, create: bool = False) -> bytes:
        self.calls += 1
        if self.missing:
            raise ConfigError("card key does not exist; load data first")
        return b"k" * 32


class _Part:
    """A store and an endpoint at once: warm is all the Scorer asks of them here."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.warmed = 0

    def warm(self) -> None:
        self.warmed += 1
        if self.error is not None:
            raise self.error

    def fetch(self, card_id: str) -> FeatureRecord:
        return FeatureRecord(card_id, "400000******0002", 0.0, {}, "t", "s1")

    def predict(self, features: Mapping[str, float | None], *, routing_key: str) -> Prediction:
        return Prediction(probability=0.1, threshold=0.5, model_version="v0001")


def test_warm_opens_the_key_the_store_and_the_endpoint_once() -> None:
    key, store, endpoint = _Key(), _Part(), _Part()
    scorer = Scorer(store=store, endpoint=endpoint, card_key=key)  # type: ignore[arg-type]

    scorer.warm()
    scorer.score("4000000000000002")

    assert (key.calls, store.warmed, endpoint.warmed) == (1, 1, 1)


def test_warm_tries_every_part_then_raises_the_first_error() -> None:
    key = _Key(missing=True)
    store = _Part(BackendUnavailableError("online store has not been synced yet"))
    endpoint = _Part()
    scorer = Scorer(store=store, endpoint=endpoint, card_key=key)  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="card key"):
        scorer.warm()

    assert (store.warmed, endpoint.warmed) == (1, 1)


def test_warm_nothing_deployed_raises_backend_unavailable() -> None:
    endpoint = _Part(BackendUnavailableError("no model is deployed"))
    scorer = Scorer(store=_Part(), endpoint=endpoint, card_key=_Key())  # type: ignore[arg-type]

    with pytest.raises(BackendUnavailableError, match="no model is deployed"):
        scorer.warm()
