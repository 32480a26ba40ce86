"""Load one landed object into the raw table: validate, key the cards, load atomically."""

from __future__ import annotations

from app.core import cards
from app.core.config import RuntimeConfig
from app.core.errors import ConflictError
from app.core.ingest.reader import read_transactions
from app.core.landing import file_sha256
from app.core.ports import IngestResult, LandedObject, LandingZone, Warehouse
from app.core.schema import CARD_COLUMN
from app.core.secrets import card_key


def load_landed(
    cfg: RuntimeConfig, landed: LandedObject, *, landing: LandingZone, warehouse: Warehouse
) -> IngestResult:
    """Idempotent by ``landed.ingest_id`` (object name plus content hash)."""
    if warehouse.has_ingest(landed.ingest_id):
        return IngestResult(landed.ingest_id, landed.name, 0, already_loaded=True)
    path = landing.local_path(landed.name)
    if file_sha256(path) != landed.content_hash:
        # A newer upload replaced the object; its own event carries its own hash.
        raise ConflictError(
            f"landed object {landed.name!r} changed after this event; "
            "its newer version has its own run"
        )
    parsed = read_transactions(
        path,
        display_name=landed.name,
        pool_size=cfg.cards.pool_size,
        bin_prefix=cfg.cards.bin_prefix,
    )
    frame = parsed.frame
    key = card_key(cfg)
    numbers = frame.pop(CARD_COLUMN)
    frame.insert(1, "card_id", [cards.card_id(n, key) for n in numbers])
    frame.insert(2, "card_masked", [cards.mask(n) for n in numbers])
    return warehouse.load_raw(frame, ingest_id=landed.ingest_id, source_object=landed.name)
