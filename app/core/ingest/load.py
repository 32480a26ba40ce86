"""Load one landed object into the raw table: validate, key the cards, load atomically."""

from __future__ import annotations

from app.core import cards
from app.core.config import RuntimeConfig
from app.core.ingest.reader import read_transactions
from app.core.ports import IngestResult, LandedObject, LandingZone, Warehouse
from app.core.schema import CARD_COLUMN
from app.core.secrets import card_key


def load_landed(
    cfg: RuntimeConfig, landed: LandedObject, *, landing: LandingZone, warehouse: Warehouse
) -> IngestResult:
    """Idempotent by content: the same bytes, under any name, load once."""
    known = warehouse.find_ingest(landed.content_hash)
    if known is not None:
        return IngestResult(known, landed.name, 0, already_loaded=True)
    parsed = read_transactions(
        landing.local_path(landed.name),
        display_name=landed.name,
        pool_size=cfg.cards.pool_size,
        bin_prefix=cfg.cards.bin_prefix,
        expected_hash=landed.content_hash,
    )
    frame = parsed.frame
    key = card_key(cfg, create=True)
    numbers = frame.pop(CARD_COLUMN)
    frame.insert(1, "card_id", [cards.card_id(n, key) for n in numbers])
    frame.insert(2, "card_masked", [cards.mask(n) for n in numbers])
    return warehouse.load_raw(
        frame,
        ingest_id=landed.ingest_id,
        source_object=landed.name,
        content_hash=landed.content_hash,
    )
