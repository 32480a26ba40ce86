"""Opt-in checks against a real, deployed stack: ``pytest -m gcp``.

They run only with credentials (``gcloud auth application-default login`` or a
workload identity) and the stack's runtime config in ``FRAUD_MLOPS_GCP_CONFIG``
(``pulumi stack output runtimeConfig --show-secrets > rc.json``, then
``FRAUD_MLOPS_GCP_CONFIG=@rc.json``); anywhere else they skip, saying why. They read,
and write only one test object to the landing bucket, which they delete again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from app.backends import Backends
from app.core.config import CONFIG_ENV, load_config
from app.core.errors import NotFoundError

pytestmark = pytest.mark.gcp

GCP_CONFIG_ENV = "FRAUD_MLOPS_GCP_CONFIG"


@pytest.fixture(scope="module")
def services() -> Backends:
    raw = os.environ.get(GCP_CONFIG_ENV)
    if not raw:
        pytest.skip(f"no deployed stack: set {GCP_CONFIG_ENV} to its runtime config (or @file)")
    try:
        import google.auth

        google.auth.default()
    except Exception as exc:  # noqa: BLE001 - any failure means: no credentials here
        pytest.skip(f"no Google credentials: {type(exc).__name__}")
    cfg = load_config({CONFIG_ENV: raw})
    if cfg.environment == "local":
        pytest.skip(f"{GCP_CONFIG_ENV} names a local config, not a deployed stack")
    return Backends(cfg)


def test_gcp_card_key_is_readable_and_long_enough(services: Backends) -> None:
    assert len(services.card_key.key()) >= 16


def test_gcp_landing_round_trips_one_object(services: Backends, tmp_path: Path) -> None:
    source = tmp_path / f"fraud-mlops-check-{uuid.uuid4().hex[:8]}.csv"
    source.write_text('"Time","Amount"\n')
    landed = services.landing.land(source)
    try:
        with services.landing.local_copy(landed) as copy:
            assert copy.path.read_bytes() == source.read_bytes()
    finally:
        from google.cloud import storage

        bucket = landed.uri.removeprefix("gs://").split("/", 1)[0]
        storage.Client().bucket(bucket).blob(landed.name).delete(timeout=30)


def test_gcp_lineage_and_counts_answer(services: Backends) -> None:
    counts = services.warehouse.table_counts()
    assert set(counts) >= {"raw.transactions", "raw.ingests"}
    latest = services.lineage.latest_snapshot()
    assert latest is None or latest.row_count > 0


def test_gcp_online_store_unknown_card_is_not_found(services: Backends) -> None:
    with pytest.raises(NotFoundError):
        services.online_store.fetch("0" * 64)
