"""Card numbers: validation, masking, keyed ids, and deterministic assignment.

A full card number (PAN) never leaves this module in a log, a table or a
response: it is stored as an HMAC-SHA256 ``card_id`` and shown masked as
first 6 / last 4.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from app.core.errors import InvalidInputError

MIN_LEN = 12
MAX_LEN = 19
_SEPARATORS = re.compile(r"[\s-]")


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def normalize(raw: object, *, field: str = "card_number") -> str:
    """Strip spaces and dashes; the result must be 12-19 digits that pass Luhn.

    The error names the field and why, and never echoes the number.
    """
    if not isinstance(raw, str):
        raise InvalidInputError("must be a string of digits", location=field)
    number = _SEPARATORS.sub("", raw)
    if not number:
        raise InvalidInputError("is empty", location=field)
    if not number.isascii() or not number.isdigit():
        raise InvalidInputError("must contain only digits, spaces and dashes", location=field)
    if not MIN_LEN <= len(number) <= MAX_LEN:
        raise InvalidInputError(
            f"must be {MIN_LEN} to {MAX_LEN} digits long, got {len(number)}", location=field
        )
    if not luhn_valid(number):
        raise InvalidInputError("fails the Luhn checksum", location=field)
    return number


def mask(number: str) -> str:
    """First 6 and last 4 digits, the rest starred (PCI DSS display rule)."""
    if len(number) < MIN_LEN:
        return "*" * len(number)
    return f"{number[:6]}{'*' * (len(number) - 10)}{number[-4:]}"


def card_id(number: str, key: bytes) -> str:
    """Keyed id for storage and lookup: HMAC-SHA256, hex."""
    return hmac.new(key, number.encode("ascii"), hashlib.sha256).hexdigest()


def make_card_number(index: int, bin_prefix: str = "400000", length: int = 16) -> str:
    """A Luhn-valid test card number: BIN, zero-padded index, check digit."""
    body_len = length - len(bin_prefix) - 1
    body = str(index).zfill(body_len)
    if len(body) > body_len:
        raise ValueError(f"card index {index} does not fit in {body_len} digits")
    payload = bin_prefix + body
    return payload + luhn_check_digit(payload)


def assign_card_number(row_text: str, pool_size: int, bin_prefix: str = "400000") -> str:
    """Card for a row of a file without one (the Kaggle file).

    The card index is the first 8 bytes of SHA-256 of the row's canonical text,
    modulo ``pool_size``: the same row always gets the same card, whatever file
    or position it arrives in.
    """
    digest = hashlib.sha256(row_text.encode("utf-8")).digest()
    return make_card_number(int.from_bytes(digest[:8], "big") % pool_size, bin_prefix)


_DIGIT_RUN = re.compile(rf"[0-9]{{{MIN_LEN},}}")


def _run_may_hold_pan(run: str) -> bool:
    for size in range(MIN_LEN, min(MAX_LEN, len(run)) + 1):
        if any(luhn_valid(run[i : i + size]) for i in range(len(run) - size + 1)):
            return True
    return False


def may_hold_pan(text: str) -> bool:
    """Whether ``text`` holds a run of digits that could be a full card number.

    Any 12-19 digit window that passes Luhn counts, even inside a longer run: such text is
    never echoed or logged.
    """
    return any(_run_may_hold_pan(run) for run in _DIGIT_RUN.findall(text))


def redact_pans(text: str) -> str:
    """``text`` with every digit run that :func:`may_hold_pan` would flag withheld.

    For error text from outside the project (a library's message may quote a cell).
    """
    return _DIGIT_RUN.sub(
        lambda m: "[digits withheld]" if _run_may_hold_pan(m.group(0)) else m.group(0), text
    )
