"""A corpus of hostile (and a few awkward but valid) transaction CSVs.

Every file is derived from one small good file in the generator's exact format, so a
test knows what each should do: load (``good``) or be refused with an
:class:`~app.core.errors.InvalidInputError` whose location starts with ``location``
and whose message holds ``match``. Line numbers are physical lines (header = 1).
"""

from __future__ import annotations

import codecs
import gzip
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from app.core.ingest.reader import MAX_FIELD_CHARS
from app.core.schema import KAGGLE_COLUMNS
from app.local.generate import generate, write_csv

BASE_ROWS = 120
AMOUNT = KAGGLE_COLUMNS.index("Amount") + 1  # 1-based columns, as errors name them
CLASS = KAGGLE_COLUMNS.index("Class") + 1
CARD = len(KAGGLE_COLUMNS) + 1


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes
    good: bool
    # Bad files: the error's location starts with this (after the file name) ...
    location: str = ""
    # ... and its message contains this.
    match: str = ""
    # Good files: the rows that load.
    rows: int = 0


def base_frame(seed: int = 5) -> pd.DataFrame:
    return generate(BASE_ROWS, fraud_rate=0.05, seed=seed).frame


def good_bytes(frame: pd.DataFrame, tmp: Path, *, with_cards: bool = True) -> bytes:
    return write_csv(frame, tmp / "base.csv", with_cards=with_cards).read_bytes()


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]  # the generator ends every line with LF


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def _set_cell(data: bytes, line: int, column: int, value: bytes) -> bytes:
    """``data`` with the cell at 1-based ``line``/``column`` replaced by ``value``."""
    lines = _lines(data)
    cells = lines[line - 1].split(b",")
    cells[column - 1] = value
    lines[line - 1] = b",".join(cells)
    return _join(lines)


def corpus(tmp: Path, seed: int = 5) -> list[CorpusFile]:
    frame = base_frame(seed)
    good = good_bytes(frame, tmp)
    kaggle = good_bytes(frame, tmp, with_cards=False)
    lines = _lines(good)
    header, rows = lines[0], lines[1:]
    n = len(rows)
    files: list[CorpusFile] = []

    def ok(name: str, data: bytes, rows: int = n) -> None:
        files.append(CorpusFile(name, data, True, rows=rows))

    def bad(name: str, data: bytes, location: str, match: str = "") -> None:
        files.append(CorpusFile(name, data, False, location=location, match=match))

    # -- awkward but valid ----------------------------------------------------------
    ok("good.csv", good)
    ok("kaggle_format.csv", kaggle)
    ok("bom.csv", codecs.BOM_UTF8 + good)
    ok("crlf.csv", good.replace(b"\n", b"\r\n"))
    ok("bom_crlf.csv", codecs.BOM_UTF8 + good.replace(b"\n", b"\r\n"))
    ok("cr_only.csv", good.replace(b"\n", b"\r"))
    ok("no_final_newline.csv", good[:-1])
    ok("trailing_blank_lines.csv", good + b"\n\n\r\n")
    ok("blank_lines_inside.csv", _join([header, *rows[:5], b"", b"   ", *rows[5:]]))
    ok("duplicate_rows.csv", _join([header, *rows, *rows[:10]]), rows=n + 10)
    ok("unquoted_class.csv", good.replace(b',"0",', b",0,").replace(b',"1",', b",1,"))
    ok("quoted_numbers.csv", _set_cell(good, 2, 2, b'"' + rows[0].split(b",")[1] + b'"'))
    ok("spaced_numbers.csv", _set_cell(good, 3, 2, b" " + rows[1].split(b",")[1] + b" "))
    ok("card_with_dashes.csv", _set_cell(good, 4, CARD, b'"4000-0000-0000-0002"'))

    # -- empty and header-only ------------------------------------------------------
    bad("empty.csv", b"", ":1", "empty")
    bad("only_newlines.csv", b"\n\n\n", ":1", "empty")
    bad("header_only.csv", header + b"\n", ":2", "no data rows")
    bad("header_only_no_newline.csv", header, ":2", "no data rows")
    bad("header_then_blank.csv", header + b"\n\n\n", ":2", "no data rows")

    # -- header ---------------------------------------------------------------------
    bad("wrong_header.csv", good.replace(b'"V3"', b'"V33"', 1), ":1:4", "'V33'")
    bad("lowercase_header.csv", good.replace(b'"Time"', b'"time"', 1), ":1:1", "'time'")
    bad("missing_header_column.csv", good.replace(b',"Amount"', b"", 1), ":1:30", "'Class'")
    bad("header_missing_tail.csv", _join([header.rsplit(b",", 2)[0], *rows]), ":1", "missing")
    bad("extra_header_column.csv", _join([header + b',"extra"', *rows]), ":1:33", "'extra'")
    bad("extra_kaggle_column.csv", kaggle.replace(b'"Class"', b'"Class","x"', 1), ":1:32", "'x'")
    bad("duplicate_header_column.csv", good.replace(b'"V2"', b'"V1"', 1), ":1:3", "'V1'")
    bad("no_header.csv", _join(rows), ":1:1", "expected header 'Time'")
    bad("double_bom.csv", codecs.BOM_UTF8 * 2 + good, ":1:1", "'Time'")
    bad("utf16_bom.csv", codecs.BOM_UTF16_LE + good.decode().encode("utf-16-le"), ":1", "UTF-16")
    bad("utf16_no_bom.csv", good.decode().encode("utf-16-be"), ":1:1", "'Time'")
    bad("utf32_bom.csv", good.decode().encode("utf-32"), ":1", "UTF-32")
    bad("semicolons.csv", good.replace(b",", b";"), ":1", "header")
    bad("latin1_header.csv", good.replace(b'"Time"', '"Tïme"'.encode("latin-1"), 1), ":1", "UTF-8")
    bad("huge_header.csv", _join([b'"' + b"T" * 100_000 + b'"', *rows]), ":1:1", "expected")

    # -- field counts and truncation ------------------------------------------------
    bad(
        "missing_column.csv",
        _join([header, *rows[:3], rows[3].rsplit(b",", 1)[0], *rows[4:]]),
        ":5",
        "expected 32 fields, got 31",
    )
    bad(
        "extra_column.csv",
        _join([header, *rows[:3], rows[3] + b",1", *rows[4:]]),
        ":5",
        "expected 32 fields, got 33",
    )
    bad("one_cell_row.csv", _join([header, *rows[:3], b"junk", *rows[4:]]), ":5", "got 1")
    bad("truncated_mid_row.csv", good[: len(good) - 200], f":{n + 1}", "truncated")
    bad("truncated_in_quote.csv", good[: len(good) - 4], f":{n + 1}:{CARD}", "truncated")
    bad("truncated_after_quote_open.csv", good[: len(good) - 18], f":{n + 1}:{CARD}", "truncated")
    bad("truncated_in_class.csv", kaggle[: len(kaggle) - 2], f":{n + 1}:{CLASS}", "truncated")
    bad(
        "unterminated_quote_mid_file.csv",
        _set_cell(good, 6, CARD, b'"4000000000000002'),
        ":6",
        "quote",
    )
    bad("newline_in_card.csv", _set_cell(good, 7, CARD, b'"40000000\n00000002"'), ":7", "")
    bad("newline_in_number.csv", _set_cell(good, 7, 3, b'"1.5\n"'), ":7", "")

    # -- values ---------------------------------------------------------------------
    bad("text_in_number.csv", _set_cell(good, 9, 6, b"abc"), ":9:6", "'V5'")
    bad("empty_number.csv", _set_cell(good, 9, 6, b""), ":9:6", "finite")
    bad("comma_decimal.csv", _set_cell(good, 9, 6, b'"1,5"'), ":9:6", "finite")
    bad("nan.csv", _set_cell(good, 10, 2, b"nan"), ":10:2", "finite")
    bad("NaN_quoted.csv", _set_cell(good, 10, 2, b'"NaN"'), ":10:2", "finite")
    bad("inf.csv", _set_cell(good, 11, 5, b"inf"), ":11:5", "finite")
    bad("minus_infinity.csv", _set_cell(good, 11, 5, b"-Infinity"), ":11:5", "finite")
    bad("overflow.csv", _set_cell(good, 11, 5, b"1e999"), ":11:5", "finite")
    bad("negative_amount.csv", _set_cell(good, 12, AMOUNT, b"-3.5"), f":12:{AMOUNT}", "negative")
    bad("negative_time.csv", _set_cell(good, 12, 1, b"-1"), ":12:1", "negative")
    bad("class_two.csv", _set_cell(good, 13, CLASS, b'"2"'), f":13:{CLASS}", "not 0 or 1")
    bad("class_text.csv", _set_cell(good, 13, CLASS, b'"fraud"'), f":13:{CLASS}", "not 0 or 1")
    bad("class_empty.csv", _set_cell(good, 13, CLASS, b""), f":13:{CLASS}", "not 0 or 1")
    bad("card_luhn.csv", _set_cell(good, 14, CARD, b'"4242424242424241"'), f":14:{CARD}", "Luhn")
    bad("card_short.csv", _set_cell(good, 14, CARD, b'"4000"'), f":14:{CARD}", "digits long")
    bad(
        "card_letters.csv",
        _set_cell(good, 14, CARD, b'"4000abcd00000002"'),
        f":14:{CARD}",
        "only digits",
    )
    bad("card_empty.csv", _set_cell(good, 14, CARD, b'""'), f":14:{CARD}", "empty")
    bad(
        "two_errors_first_wins.csv",
        _set_cell(_set_cell(good, 20, 4, b"x"), 15, 7, b"y"),
        ":15:7",
        "'V6'",
    )
    bad(
        "huge_field.csv",
        _set_cell(good, 16, 3, b"1" * (MAX_FIELD_CHARS + 1)),
        ":16:3",
        f"longer than {MAX_FIELD_CHARS}",
    )
    bad(
        "huge_card_field.csv",
        _set_cell(good, 16, CARD, b'"' + b"4" * 40_000 + b'"'),
        f":16:{CARD}",
        "longer than",
    )
    bad("line_beyond_cap.csv", _set_cell(good, 17, 2, b"9" * (3 << 20)), ":17:2", "longer than")
    bad("nul_byte.csv", _set_cell(good, 18, 2, b"\x001.5"), ":18:2", "finite")
    bad("bom_in_cell.csv", _set_cell(good, 18, 1, codecs.BOM_UTF8 + b"5"), ":18:1", "finite")

    # -- encodings and junk ---------------------------------------------------------
    bad("invalid_utf8_cell.csv", _set_cell(good, 19, 8, b"1.\xff5"), ":19:8", "UTF-8")
    bad(
        "latin1_card.csv",
        _set_cell(good, 19, CARD, '"4000é"'.encode("latin-1")),
        f":19:{CARD}",
        "UTF-8",
    )
    bad("overlong_utf8.csv", _set_cell(good, 19, 3, b"\xc0\xaf"), ":19:3", "UTF-8")
    rng = random.Random(seed)
    junk = bytes(rng.randrange(256) for _ in range(4096))
    bad("binary_junk.csv", junk, "", "")
    bad("binary_after_header.csv", header + b"\n" + junk, ":2", "")
    bad("junk_appended.csv", good + junk, f":{n + 2}", "")
    bad("gzipped.csv", gzip.compress(good, mtime=0), "", "")
    bad("png_magic.csv", b"\x89PNG\r\n\x1a\n" + junk, ":1", "")
    return files


def write(tmp: Path, files: list[CorpusFile]) -> list[tuple[CorpusFile, Path]]:
    tmp.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        path = tmp / f.name
        path.write_bytes(f.data)
        out.append((f, path))
    return out
