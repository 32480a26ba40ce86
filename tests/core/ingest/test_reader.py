from __future__ import annotations

from pathlib import Path

import pytest

from app.core import cards
from app.core.errors import InvalidInputError
from app.core.ingest.reader import read_transactions

HEADER = ",".join(f'"{c}"' for c in ["Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class"])


def _row(time: str = "0", amount: str = "149.62", label: str = '"0"', v: str = "-1.5") -> str:
    return ",".join([time, *([v] * 28), amount, label])


def _write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_transactions_kaggle_format_assigns_deterministic_cards(kaggle_csv: Path) -> None:
    first = read_transactions(kaggle_csv, pool_size=50)
    again = read_transactions(kaggle_csv, pool_size=50)
    assert not first.had_card_column
    assert len(first.frame) == 400
    assert first.frame["card_number"].tolist() == again.frame["card_number"].tolist()
    assert all(cards.luhn_valid(c) for c in first.frame["card_number"])
    assert first.frame["card_number"].nunique() <= 50
    assert first.frame["source_line"].tolist()[:3] == [2, 3, 4]


def test_read_transactions_card_column_is_kept(small_csv: Path, small_data) -> None:  # type: ignore[no-untyped-def]
    parsed = read_transactions(small_csv)
    assert parsed.had_card_column
    assert parsed.frame["card_number"].tolist() == small_data.frame["card_number"].tolist()
    assert int(parsed.frame["label"].sum()) == int(small_data.frame["Class"].sum())


def test_read_transactions_quoted_class_parses_to_int(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "\n" + _row(label='"1"') + "\n" + _row(time="5") + "\n")
    frame = read_transactions(path).frame
    assert frame["label"].tolist() == [1, 0]
    assert frame["source_time"].tolist() == [0.0, 5.0]


def test_read_transactions_wrong_header_names_line_and_column(tmp_path: Path) -> None:
    bad = HEADER.replace('"V3"', '"V33"')
    path = _write(tmp_path, f"{bad}\n{_row()}\n")
    with pytest.raises(InvalidInputError) as info:
        read_transactions(path)
    assert info.value.location == "f.csv:1:4"
    assert "'V3'" in str(info.value) and "'V33'" in str(info.value)


def test_read_transactions_non_numeric_cell_names_line_and_column(tmp_path: Path) -> None:
    rows = [_row(), _row(), _row(amount="12,5".replace(",", "x"))]
    path = _write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(InvalidInputError) as info:
        read_transactions(path)
    assert info.value.location == "f.csv:4:30"
    assert "'Amount'" in str(info.value)


def test_read_transactions_empty_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty") as info:
        read_transactions(_write(tmp_path, ""))
    assert info.value.location == "f.csv:1"


def test_read_transactions_header_only_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no data rows"):
        read_transactions(_write(tmp_path, HEADER + "\n"))


def test_read_transactions_truncated_last_line_is_rejected(tmp_path: Path) -> None:
    full = HEADER + "\n" + _row() + "\n" + _row(time="7")
    path = _write(tmp_path, full[: len(full) - 120])
    with pytest.raises(InvalidInputError) as info:
        read_transactions(path)
    assert info.value.location == "f.csv:3"
    assert "truncated" in str(info.value)


def test_read_transactions_cut_inside_quoted_class_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "\n" + _row() + "\n" + _row()[:-1])
    with pytest.raises(InvalidInputError) as info:
        read_transactions(path)
    assert info.value.location is not None and info.value.location.startswith("f.csv:3")


def test_read_transactions_bad_class_value_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "\n" + _row(label='"2"') + "\n")
    with pytest.raises(InvalidInputError, match="not 0 or 1") as info:
        read_transactions(path)
    assert info.value.location == "f.csv:2:31"


def test_read_transactions_nan_and_negative_amount_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="finite"):
        read_transactions(_write(tmp_path, f"{HEADER}\n{_row(v='nan')}\n"))
    with pytest.raises(InvalidInputError, match="negative"):
        read_transactions(_write(tmp_path, f"{HEADER}\n{_row(amount='-3')}\n", "g.csv"))


def test_read_transactions_bad_card_hides_number(tmp_path: Path) -> None:
    header = HEADER + ',"card_number"'
    path = _write(tmp_path, f'{header}\n{_row()},"4242424242424241"\n')
    with pytest.raises(InvalidInputError, match="Luhn") as info:
        read_transactions(path)
    assert info.value.location == "f.csv:2:32"
    assert "4242424242424241" not in str(info.value)


@pytest.mark.parametrize("block_bytes", [7, 400, 1 << 20])
def test_read_transactions_across_blocks_keeps_lines_and_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    # 7 bytes: every line spans blocks; 400: a few lines a block; 1 MiB: one block.
    monkeypatch.setattr("app.core.ingest.reader.BLOCK_BYTES", block_bytes)
    rows = [_row(time=str(t)) for t in range(8)]
    frame = read_transactions(_write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")).frame
    assert frame["source_time"].tolist() == [float(t) for t in range(8)]
    assert frame["source_line"].tolist() == list(range(2, 10))
    rows[6] = _row(v="oops")
    with pytest.raises(InvalidInputError) as info:
        read_transactions(_write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n", "g.csv"))
    assert info.value.location == "g.csv:8:2"


def test_read_transactions_binary_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(HEADER.encode() + b"\n\x00\x01\x02,3\n")
    with pytest.raises(InvalidInputError) as info:
        read_transactions(path)
    assert info.value.location is not None and info.value.location.startswith("f.csv")
    path.write_bytes(b"\xff\xfe" + HEADER.encode())
    with pytest.raises(InvalidInputError, match="UTF-8"):
        read_transactions(path)


def test_read_transactions_utf8_bom_loads_and_is_hashed(small_csv: Path, tmp_path: Path) -> None:
    plain = read_transactions(small_csv)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + small_csv.read_bytes())
    parsed = read_transactions(bom)
    assert parsed.frame.equals(plain.frame)
    assert parsed.content_hash != plain.content_hash  # the hash is of the bytes, BOM included


def test_read_transactions_crlf_loads_with_the_same_lines(small_csv: Path, tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(small_csv.read_bytes().replace(b"\n", b"\r\n"))
    assert read_transactions(crlf).frame.equals(read_transactions(small_csv).frame)


def test_read_transactions_oversized_field_names_line_and_column(tmp_path: Path) -> None:
    from app.core.ingest.reader import MAX_FIELD_CHARS

    rows = [_row(), _row(v="1" * (MAX_FIELD_CHARS + 1))]
    with pytest.raises(InvalidInputError, match="longer than") as info:
        read_transactions(_write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n"))
    assert info.value.location == "f.csv:3:2"


def test_read_transactions_blank_lines_keep_physical_line_numbers(tmp_path: Path) -> None:
    text = HEADER + "\n" + _row() + "\n\n  \n" + _row(time="4") + "\n\n"
    frame = read_transactions(_write(tmp_path, text)).frame
    assert frame["source_line"].tolist() == [2, 5]


def test_read_transactions_kaggle_cards_match_the_row_text_definition(kaggle_csv: Path) -> None:
    import csv

    with kaggle_csv.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    expected = [cards.assign_card_number(",".join(r), 50) for r in rows]
    assert read_transactions(kaggle_csv, pool_size=50).frame["card_number"].tolist() == expected


def test_read_transactions_expected_hash_mismatch_is_a_conflict(small_csv: Path) -> None:
    from app.core.errors import ConflictError

    with pytest.raises(ConflictError):
        read_transactions(small_csv, expected_hash="0" * 64)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_read_transactions_parallel_blocks_equal_serial_and_first_problem_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_csv: Path, threads: int
) -> None:
    monkeypatch.setattr("app.core.ingest.reader.PARSE_THREADS", 1)
    serial = read_transactions(small_csv)
    monkeypatch.setattr("app.core.ingest.reader.PARSE_THREADS", threads)
    monkeypatch.setattr("app.core.ingest.reader.BLOCK_BYTES", 4096)  # ~90 blocks
    parallel = read_transactions(small_csv)
    assert parallel.frame.equals(serial.frame)
    assert parallel.content_hash == serial.content_hash
    rows = [_row(time=str(t)) for t in range(400)]
    rows[150] = _row(amount="-1")  # line 152, in an early block
    rows[390] = _row(v="oops")  # line 392, in a block parsed at the same time or later
    with pytest.raises(InvalidInputError, match="negative") as info:
        read_transactions(_write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n"))
    assert info.value.location == "f.csv:152:30"  # Amount


def test_read_transactions_bad_row_before_an_overlong_line_is_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.core.ingest.reader.PARSE_THREADS", 2)
    monkeypatch.setattr("app.core.ingest.reader.BLOCK_BYTES", 400)
    # The reader meets the over-long line while the bad row's block is still parsing.
    rows = [_row(), _row(label='"7"'), _row(), "9" * (3 << 20)]
    with pytest.raises(InvalidInputError, match="not 0 or 1") as info:
        read_transactions(_write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n"))
    assert info.value.location == "f.csv:3:31"


def test_read_transactions_every_row_bad_names_the_first_line_with_blocks_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every block fails at once: the error must still be the file's first, not whichever
    # block in flight is looked at after the first failure.
    monkeypatch.setattr("app.core.ingest.reader.PARSE_THREADS", 2)
    monkeypatch.setattr("app.core.ingest.reader.BLOCK_BYTES", 400)
    rows = [_row(amount="1,5") for _ in range(40)]  # a decimal comma: one field too many
    with pytest.raises(InvalidInputError) as info:
        read_transactions(_write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n"))
    assert info.value.location == "f.csv:2"
