"""Read and validate a landed transactions CSV, all or nothing.

Accepts the Kaggle / ULB file exactly as published (quoted header, quoted
``"0"``/``"1"`` classes, no card column) and the same format with a trailing
``card_number`` column. Any problem raises :class:`InvalidInputError` naming
``file:line:column``; nothing is returned for a partly bad file.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np
import pandas as pd

from app.core import cards
from app.core.errors import ConflictError, InvalidInputError
from app.core.schema import CARD_COLUMN, KAGGLE_COLUMNS, PCA_COLUMNS

NUMERIC_COLUMNS: tuple[str, ...] = ("Time", *PCA_COLUMNS, "Amount")


@dataclass(frozen=True)
class ParsedFile:
    """Validated rows.

    Columns: ``source_line``, ``card_number``, ``source_time``, V1..V28, ``amount``, ``label``.
    """

    frame: pd.DataFrame
    had_card_column: bool
    # SHA-256 of exactly the bytes parsed, computed while parsing: the content's identity.
    content_hash: str = ""


CHUNK_ROWS = 50_000  # rows held as Python strings at once; the rest is numeric arrays


def read_transactions(
    path: Path,
    *,
    display_name: str | None = None,
    pool_size: int = 2000,
    bin_prefix: str = "400000",
    expected_hash: str | None = None,
) -> ParsedFile:
    """Stream the file in chunks, validating each; the first problem aborts the whole read.

    With ``expected_hash``, the bytes parsed must be the bytes that landed (SHA-256).
    """
    name = display_name or path.name
    try:
        with path.open("rb", buffering=0) as raw:
            hashing = _HashingReader(raw)
            text = io.TextIOWrapper(io.BufferedReader(hashing), encoding="utf-8", newline="")
            parsed = _read(text, name, pool_size, bin_prefix)
            text.read()  # hash to the end even past trailing blank lines
    except UnicodeDecodeError as exc:
        raise InvalidInputError("is not UTF-8 text", location=name) from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot be read: {exc.strerror}", location=name) from exc
    if expected_hash is not None and hashing.hexdigest() != expected_hash:
        # Replaced while being read: the newer object has its own event and its own run.
        raise ConflictError(f"{name} changed while it was being read; its newer version loads")
    return dataclasses.replace(parsed, content_hash=hashing.hexdigest())


class _HashingReader(io.RawIOBase):
    """Hashes the bytes as the parser reads them: what is parsed is what is hashed."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return int(n or 0)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _read(fh: TextIO, name: str, pool_size: int, bin_prefix: str) -> ParsedFile:
    reader = csv.reader(fh, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidInputError(f"unreadable header: {exc}", location=f"{name}:1") from exc
    if header is None or not any(h.strip() for h in header):
        raise InvalidInputError("file is empty", location=f"{name}:1")
    has_cards = _check_header(header, name)
    width = len(header)

    parts: list[pd.DataFrame] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line: holds no data
            if len(row) != width:
                line = reader.line_num
                last = len(row) < width and next(reader, None) is None
                hint = " (truncated last line?)" if last else ""
                raise InvalidInputError(
                    f"expected {width} fields, got {len(row)}{hint}", location=f"{name}:{line}"
                )
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) == CHUNK_ROWS:
                parts.append(_chunk(rows, lines, name, has_cards, pool_size, bin_prefix))
                rows, lines = [], []
    except csv.Error as exc:
        raise InvalidInputError(
            f"malformed CSV ({exc}); truncated file?", location=f"{name}:{reader.line_num}"
        ) from exc
    if rows:
        parts.append(_chunk(rows, lines, name, has_cards, pool_size, bin_prefix))
    if not parts:
        raise InvalidInputError("has a header but no data rows", location=f"{name}:2")
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return ParsedFile(frame=frame, had_card_column=has_cards)


def _chunk(
    rows: list[list[str]],
    lines: list[int],
    name: str,
    has_cards: bool,
    pool_size: int,
    bin_prefix: str,
) -> pd.DataFrame:
    grid = np.array(rows, dtype=object)
    frame = pd.DataFrame({"source_line": np.array(lines, dtype=np.int64)})
    for idx, col in enumerate(NUMERIC_COLUMNS):
        frame[col] = _numeric(grid[:, idx], col, idx, lines, name)
    label_idx = KAGGLE_COLUMNS.index("Class")
    frame["Class"] = _labels(grid[:, label_idx], label_idx, lines, name)
    _non_negative(frame, "Time", lines, name)
    _non_negative(frame, "Amount", lines, name)

    if has_cards:
        card_idx = len(KAGGLE_COLUMNS)
        numbers = []
        for i, raw in enumerate(grid[:, card_idx]):
            try:
                numbers.append(cards.normalize(raw, field=CARD_COLUMN))
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"card_number {exc.detail}",
                    location=f"{name}:{lines[i]}:{card_idx + 1}",
                ) from None
    else:
        # Deterministic: the card follows from the row's content (see cards.assign_card_number).
        numbers = [cards.assign_card_number(",".join(row), pool_size, bin_prefix) for row in rows]
    frame[CARD_COLUMN] = numbers

    out = frame.rename(columns={"Time": "source_time", "Amount": "amount", "Class": "label"})
    ordered = ["source_line", CARD_COLUMN, "source_time", *PCA_COLUMNS, "amount", "label"]
    return out[ordered]


def _check_header(header: list[str], name: str) -> bool:
    expected = list(KAGGLE_COLUMNS)
    got = [h.strip() for h in header]
    if got == [*expected, CARD_COLUMN]:
        return True
    if got == expected:
        return False
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            raise InvalidInputError(
                f"column {i + 1}: expected header {want!r}, got {have!r}",
                location=f"{name}:1:{i + 1}",
            )
    if len(got) < len(expected):
        missing = ", ".join(expected[len(got) :])
        raise InvalidInputError(f"header is missing columns: {missing}", location=f"{name}:1")
    extra = got[len(expected)]
    raise InvalidInputError(
        f"column {len(expected) + 1}: unexpected header {extra!r} "
        f"(only {CARD_COLUMN!r} may follow Class)",
        location=f"{name}:1:{len(expected) + 1}",
    )


def _numeric(values: np.ndarray, col: str, idx: int, lines: list[int], name: str) -> np.ndarray:
    parsed = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(parsed)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(
            f"column {col!r}: {_show(values[i])} is not a finite number",
            location=f"{name}:{lines[i]}:{idx + 1}",
        )
    return parsed


def _labels(values: np.ndarray, idx: int, lines: list[int], name: str) -> np.ndarray:
    series = pd.Series(values).str.strip()
    ok = series.isin(["0", "1"]).to_numpy()
    if not ok.all():
        i = int(np.argmin(ok))
        raise InvalidInputError(
            f"column 'Class': {_show(values[i])} is not 0 or 1",
            location=f"{name}:{lines[i]}:{idx + 1}",
        )
    return series.astype(np.int64).to_numpy()


def _non_negative(frame: pd.DataFrame, col: str, lines: list[int], name: str) -> None:
    neg = (frame[col] < 0).to_numpy()
    if neg.any():
        i = int(np.argmax(neg))
        raise InvalidInputError(
            f"column {col!r}: {frame[col].iloc[i]} is negative",
            location=f"{name}:{lines[i]}:{KAGGLE_COLUMNS.index(col) + 1}",
        )


def _show(value: object) -> str:
    text = str(value)
    # Cells are echoed so the user can find them, but never more than 6 characters: a
    # misplaced card number must not leak beyond what a masked number shows.
    return repr(text[:6] + "…") if len(text) > 6 else repr(text)
