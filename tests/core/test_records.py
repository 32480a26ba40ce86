from __future__ import annotations

import hashlib

import pytest

from app.core import cards
from app.core.records import traffic_bucket


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 90])
def test_traffic_bucket_10000_card_ids_below_percent_within_3_percent(percent: int) -> None:
    keys = [cards.card_id(cards.make_card_number(i), b"key") for i in range(10_000)]

    share = sum(traffic_bucket(k) < percent for k in keys) / len(keys)

    assert abs(share - percent / 100) <= 0.03


def test_traffic_bucket_is_the_first_8_bytes_of_sha256_mod_100() -> None:
    # Pinned to the rule, not to this process: another home must route a card alike.
    digest = hashlib.sha256(b"card-1").digest()
    assert traffic_bucket("card-1") == int.from_bytes(digest[:8], "big") % 100
    assert {traffic_bucket(f"card-{i}") for i in range(2000)} == set(range(100))
