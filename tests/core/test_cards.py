from __future__ import annotations

import pytest

from app.core import cards
from app.core.errors import InvalidInputError


def test_make_card_number_any_index_passes_luhn() -> None:
    for i in (0, 1, 42, 123_456_789):
        number = cards.make_card_number(i)
        assert len(number) == 16
        assert number.startswith("400000")
        assert cards.luhn_valid(number)


def test_luhn_valid_known_numbers_match_reference() -> None:
    assert cards.luhn_valid("4242424242424242")
    assert cards.luhn_valid("79927398713")
    assert not cards.luhn_valid("4242424242424241")


def test_normalize_spaces_and_dashes_are_stripped() -> None:
    assert cards.normalize("4242 4242-4242 4242") == "4242424242424242"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "is empty"),
        ("4242x42424242424", "only digits"),
        ("42424242424", "12 to 19 digits"),
        ("42424242424242424242", "12 to 19 digits"),
        ("4242424242424241", "Luhn"),
        (4242424242424242, "string"),
        ("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "only digits"),
    ],
)
def test_normalize_bad_number_names_field_and_reason(raw: object, why: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        cards.normalize(raw)
    assert info.value.location == "card_number"
    assert why in str(info.value)
    assert "4242424242424241" not in str(info.value)


def test_mask_shows_first6_last4_only() -> None:
    assert cards.mask("4242424242424242") == "424242******4242"
    assert cards.mask("4000001234567899123") == "400000*********9123"


def test_card_id_different_keys_differ_and_hide_number() -> None:
    a = cards.card_id("4242424242424242", b"k" * 32)
    b = cards.card_id("4242424242424242", b"j" * 32)
    assert a != b
    assert len(a) == 64
    assert "4242424242424242" not in a


def test_assign_card_number_same_row_same_card() -> None:
    row = "0,-1.359807,1.0,149.62,0"
    first = cards.assign_card_number(row, 100)
    assert first == cards.assign_card_number(row, 100)
    assert cards.luhn_valid(first)
    spread = {cards.assign_card_number(f"row{i}", 50) for i in range(2000)}
    assert 45 <= len(spread) <= 50


def test_redact_pans_withholds_luhn_runs_keeps_other_digits() -> None:
    from app.core.cards import may_hold_pan, redact_pans

    text = "cannot cast '4242424242424242' at row 123456789012 (id 40000012345678991)"
    out = redact_pans(text)
    assert "4242424242424242" not in out and not may_hold_pan(out)
    # 123456789012 holds no Luhn-valid window; the 17 digits hold 4000001234567899.
    assert out == "cannot cast '[digits withheld]' at row 123456789012 (id [digits withheld])"
    assert redact_pans("no digits here, 2026-12-02") == "no digits here, 2026-12-02"
