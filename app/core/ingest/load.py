"""Load one landed object into the raw table: validate, key the cards, load atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.core import cards
from app.core.config import CardAssignmentConfig
from app.core.ingest.reader import read_transactions
from app.core.ports import CardKeySource, LandingZone, Lineage, Warehouse
from app.core.records import IngestResult, LandedObject, ingest_id_for
from app.core.schema import CARD_COLUMN


def load_landed(
    landed: LandedObject,
    *,
    landing: LandingZone,
    warehouse: Warehouse,
    lineage: Lineage,
    card_key: CardKeySource,
    cards_cfg: CardAssignmentConfig,
) -> IngestResult:
    """Idempotent by content: the same bytes, under any name, load once.

    The content hash comes from the parse itself (what is parsed is what is hashed);
    when the event already named one, the file must still be that content.
    """
    if landed.content_hash is not None:
        known = lineage.ingest_by_hash(landed.content_hash)
        if known is not None:
            return IngestResult(known.ingest_id, landed.name, 0, True, known.content_hash)
    with landing.local_copy(landed) as copy:
        parsed = read_transactions(
            copy.path,
            display_name=landed.name,
            pool_size=cards_cfg.pool_size,
            bin_prefix=cards_cfg.bin_prefix,
            # The copier's hash, when it took one, must be what the parse saw too.
            expected_hash=copy.landed.content_hash,
        )
    generation = copy.landed.generation  # the version read, when the event named none
    content_hash = parsed.content_hash
    known = lineage.ingest_by_hash(content_hash)
    if known is not None:
        return IngestResult(known.ingest_id, landed.name, 0, True, content_hash)
    frame = parsed.frame
    key = card_key.key(create=True)
    # Keyed and masked once per distinct card (a file has far fewer cards than rows).
    codes, numbers = pd.factorize(frame.pop(CARD_COLUMN))
    ids = np.array([cards.card_id(n, key) for n in numbers], dtype=object)
    masked = np.array([cards.mask(n) for n in numbers], dtype=object)
    frame.insert(1, "card_id", ids[codes])
    frame.insert(2, "card_masked", masked[codes])
    return warehouse.load_raw(
        frame,
        ingest_id=ingest_id_for(landed.name, content_hash),
        source_object=landed.name,
        content_hash=content_hash,
        generation=generation,
    )
