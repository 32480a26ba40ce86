"""Read and validate a landed transactions CSV, all or nothing.

Accepts the Kaggle / ULB file exactly as published (quoted header, quoted
``"0"``/``"1"`` classes, no card column) and the same format with a trailing
``card_number`` column; a UTF-8 byte-order mark (as Excel writes it) and CRLF line
ends are fine. Any problem raises :class:`InvalidInputError` naming
``file:line:column`` (``file:line`` when no single column is at fault); nothing is
returned for a partly bad file.

The parsing is pyarrow's CSV reader, and the checks are vectorised over its columns:
no Python code runs per row. The file is read in blocks of whole lines, each hashed
as it is read (what is parsed is what is hashed) and parsed on its own, so memory is
one block plus the validated columns, never the file twice. Blocks are parsed on
:data:`PARSE_THREADS` threads (pyarrow's parser and the checks release the GIL), at
most one block ahead of them read, and their results taken in file order, so the
error raised is still the file's first. pyarrow, not DuckDB: this module also runs
in Composer, which has pyarrow but not DuckDB.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from app.core import cards
from app.core.errors import ConflictError, InvalidInputError
from app.core.schema import CARD_COLUMN, KAGGLE_COLUMNS, PCA_COLUMNS

NUMERIC_COLUMNS: tuple[str, ...] = ("Time", *PCA_COLUMNS, "Amount")

# Longest cell accepted, in characters: the longest legitimate one (a number, a card
# with separators) is under 30, so anything near this is junk, not data.
MAX_FIELD_CHARS = 16_384
# Bytes read per block (then cut at the last line end): bounds memory and sets the
# unit pyarrow parses at once.
BLOCK_BYTES = 8 << 20
# Blocks parsed at once: the machine's cores, at most 4 (memory is about this many
# blocks plus one, and more threads only wait on the one file read).
PARSE_THREADS = max(1, min(4, os.cpu_count() or 1))

_BOM = b"\xef\xbb\xbf"
_FOREIGN_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_LINE_END = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True)
class ParsedFile:
    """Validated rows.

    Columns: ``source_line``, ``card_number``, ``source_time``, V1..V28, ``amount``, ``label``.
    """

    frame: pd.DataFrame
    had_card_column: bool
    # SHA-256 of exactly the bytes parsed, computed while parsing: the content's identity.
    content_hash: str = ""


def read_transactions(
    path: Path,
    *,
    display_name: str | None = None,
    pool_size: int = 2000,
    bin_prefix: str = "400000",
    expected_hash: str | None = None,
) -> ParsedFile:
    """Stream the file in blocks, validating each; the first problem aborts the whole read.

    With ``expected_hash``, the bytes parsed must be the bytes that landed (SHA-256).
    """
    name = display_name or path.name
    try:
        with path.open("rb") as fh:
            blocks = _Blocks(fh, name)
            header = _header(blocks.header(), name)
            has_cards = _check_header(header, name)
            spec = _Spec(name, len(header), has_cards, pool_size, bin_prefix)
            parts = _parse_blocks(blocks, spec)
            content_hash = blocks.hexdigest()
    except OSError as exc:
        raise InvalidInputError(f"cannot be read: {exc.strerror}", location=name) from exc
    parts = [p for p in parts if p.rows]
    if not parts:
        raise InvalidInputError("has a header but no data rows", location=f"{name}:2")
    if expected_hash is not None and content_hash != expected_hash:
        # Replaced while being read: the newer object has its own event and its own run.
        raise ConflictError(f"{name} changed while it was being read; its newer version loads")
    return ParsedFile(_frame(parts), had_card_column=has_cards, content_hash=content_hash)


# -- blocks of whole lines ---------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    data: bytes
    first_line: int  # physical line number of the block's first line
    last: bool  # the file's final block
    line_ends: int
    has_empty_line: bool

    @classmethod
    def scan(cls, data: bytes, first_line: int, last: bool) -> _Block:
        """Count the lines once, with numpy (bytes.count is several times slower)."""
        codes = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(codes == 10)
        if b"\r" not in data:
            # LF only: an empty line is a line end right after another (or first).
            empty = bool(len(newlines)) and (
                newlines[0] == 0 or bool((np.diff(newlines) == 1).any())
            )
            return cls(data, first_line, last, len(newlines), empty)
        # CRLF and lone CRs: CRLF pairs are not empty lines, so look for the pairs that are.
        empty = data.startswith((b"\n", b"\r")) or any(
            pair in data for pair in (b"\n\n", b"\r\r", b"\n\r")
        )
        return cls(data, first_line, last, _line_ends(data), empty)


def _line_ends(data: bytes) -> int:
    """Line ends as pyarrow counts them: CRLF, LF and a lone CR each end one line."""
    codes = np.frombuffer(data, dtype=np.uint8)
    lf, cr = codes == 10, codes == 13
    crlf = int(np.count_nonzero(cr[:-1] & lf[1:])) if len(codes) > 1 else 0
    return int(np.count_nonzero(lf)) + int(np.count_nonzero(cr)) - crlf


class _Blocks:
    """The file as blocks that end at a line end, hashed exactly as read."""

    def __init__(self, fh: BinaryIO, name: str) -> None:
        self._fh = fh
        self._name = name
        self._digest = hashlib.sha256()
        self._pending = b""
        self._eof = False
        self._line = 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def _fill(self) -> None:
        chunk = self._fh.read(BLOCK_BYTES)
        if not chunk:
            self._eof = True
            return
        self._digest.update(chunk)
        self._pending += chunk

    def header(self) -> bytes:
        """The first line, its line end consumed; the rest stays pending."""
        while True:
            match = _LINE_END.search(self._pending)
            # A CR that ends the buffer may be half of a CRLF still unread.
            settled = match is not None and (match.end() < len(self._pending) or self._eof)
            if settled or self._eof:
                break
            if len(self._pending) > _max_line_bytes(len(KAGGLE_COLUMNS) + 1):
                raise _oversized(self._pending, self._name, 1)
            self._fill()
        if match is None:
            line, self._pending = self._pending, b""
        else:
            line, self._pending = self._pending[: match.start()], self._pending[match.end() :]
        self._line = 2
        return line

    def __iter__(self) -> Iterator[_Block]:
        while True:
            while not self._eof and len(self._pending) < BLOCK_BYTES:
                self._fill()
            cut = self._cut()
            while cut == 0 and not self._eof:  # no line end yet: one long line
                if len(self._pending) > _max_line_bytes(len(KAGGLE_COLUMNS) + 1):
                    raise _oversized(self._pending, self._name, self._line)
                self._fill()
                cut = self._cut()
            if not self._pending:
                return
            data, self._pending = self._pending[:cut], self._pending[cut:]
            last = self._eof and not self._pending
            block = _Block.scan(data, self._line, last)
            yield block
            self._line += block.line_ends
            if last:
                return

    def _cut(self) -> int:
        """Length of the pending bytes' whole lines (all of them at the end of the file)."""
        buf = self._pending
        if self._eof:
            return len(buf)
        # A CR at the very end may be the first half of a CRLF: not a cut point yet.
        return max(buf.rfind(b"\n"), buf.rfind(b"\r", 0, len(buf) - 1)) + 1


def _max_line_bytes(width: int) -> int:
    # A line longer than this must hold a cell over the cap (4 bytes a character at most).
    return width * (4 * MAX_FIELD_CHARS + 3)


def _oversized(pending: bytes, name: str, line: int) -> InvalidInputError:
    """The error for a line too long to be valid: its first over-long cell, when found."""
    # Commas split cells well enough here: no valid cell holds one.
    cells = pending.decode("utf-8", errors="replace").split(",")
    for col, cell in enumerate(cells):
        if len(cell.strip('"')) > MAX_FIELD_CHARS:
            return InvalidInputError(
                f"field is longer than {MAX_FIELD_CHARS} characters",
                location=f"{name}:{line}:{col + 1}",
            )
    return InvalidInputError(
        f"line is longer than {_max_line_bytes(len(KAGGLE_COLUMNS) + 1)} bytes",
        location=f"{name}:{line}",
    )


# -- the header --------------------------------------------------------------------------


def _header(raw: bytes, name: str) -> list[str]:
    for bom, encoding in _FOREIGN_BOMS:
        if raw.startswith(bom):
            raise InvalidInputError(
                f"is not UTF-8 text ({encoding} byte-order mark)", location=f"{name}:1"
            )
    raw = raw.removeprefix(_BOM)  # Excel's "CSV UTF-8" starts with one
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("is not UTF-8 text", location=f"{name}:1") from exc
    try:
        header = next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        raise InvalidInputError(f"unreadable header: {exc}", location=f"{name}:1") from exc
    if not any(h.strip() for h in header):
        raise InvalidInputError("file is empty", location=f"{name}:1")
    return header


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
                f"column {i + 1}: expected header {want!r}, got {_clip(have)!r}",
                location=f"{name}:1:{i + 1}",
            )
    if len(got) < len(expected):
        missing = ", ".join(expected[len(got) :])
        raise InvalidInputError(f"header is missing columns: {missing}", location=f"{name}:1")
    at = len(expected) + (got[len(expected)] == CARD_COLUMN)  # past a valid card column
    raise InvalidInputError(
        f"column {at + 1}: unexpected header {_clip(got[at])!r} "
        f"(only {CARD_COLUMN!r} may follow Class)",
        location=f"{name}:1:{at + 1}",
    )


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- one block ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    name: str
    width: int
    has_cards: bool
    pool_size: int
    bin_prefix: str
    # Each distinct card number is checked once per file: raw text -> number or error.
    checked: dict[str, str | InvalidInputError] = field(default_factory=dict)


@dataclass(frozen=True)
class _Part:
    """One block's validated columns."""

    lines: np.ndarray
    numbers: dict[str, np.ndarray]
    labels: np.ndarray
    card_numbers: pa.Array

    @property
    def rows(self) -> int:
        return len(self.lines)


@dataclass(frozen=True, order=True)
class _Problem:
    line: int
    column: int  # 0: the line as a whole
    message: str


def _parse_block(block: _Block, spec: _Spec) -> _Part:
    skipped: list[tuple[int, int, str]] = []  # (record number, fields, text) pyarrow set aside

    def set_aside(row: pacsv.InvalidRow) -> str:
        skipped.append((int(row.number or 0), int(row.actual_columns), str(row.text)))
        return "skip"

    if not block.data.isascii():  # ASCII is UTF-8; anything else is checked, to say where
        try:
            block.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(block, exc, spec.name) from None
    columns = [f"c{i}" for i in range(spec.width)]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(block.data),
            read_options=pacsv.ReadOptions(
                column_names=columns,
                use_threads=False,  # record numbers reach the handler only when serial
                block_size=max(1 << 20, 2 * _max_line_bytes(spec.width)),
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=set_aside),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                check_utf8=False,  # checked above, once
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            table = pa.table({c: pa.array([], pa.string()) for c in columns})
        else:
            raise _unparsable(block, spec.name) from exc

    record_lines = _record_lines(block)
    blank = {n for n, fields, text in skipped if fields == 1 and not text.strip()}
    if len(record_lines) != table.num_rows + len(skipped):
        # A quoted cell ran over a line end: records and lines no longer pair up.
        raise _at(_multiline(block), spec.name)
    problems: list[_Problem] = []
    for number, fields, _text in skipped:
        if number in blank:
            continue  # whitespace only: holds no data, like an empty line
        line = int(record_lines[number - 1])
        final = block.last and number == len(record_lines)
        hint = " (truncated last line?)" if final and fields < spec.width else ""
        problems.append(_Problem(line, 0, f"expected {spec.width} fields, got {fields}{hint}"))
        break  # set-aside rows come in file order: the first one is enough
    kept = np.ones(len(record_lines), dtype=bool)
    kept[[n - 1 for n, _, _ in skipped]] = False
    part, found = _validate(table, record_lines[kept], spec)
    problems += found
    cut = _final_quote(block) if block.last else None
    if cut is not None and (not problems or min(problems).line >= cut.line):
        problems = [cut]  # the cut explains whatever else is wrong with its line
    if problems:
        raise _at(min(problems), spec.name)
    return part


def _parse_blocks(blocks: Iterable[_Block], spec: _Spec) -> list[_Part]:
    """Every block parsed, in file order; the first problem in file order is raised."""
    if PARSE_THREADS == 1:
        return [_parse_block(block, spec) for block in blocks]
    parts: list[_Part] = []
    pending: deque[Future[_Part]] = deque()
    reading = iter(blocks)
    with ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="csv-block") as pool:
        try:
            while True:
                try:
                    block = next(reading)
                except StopIteration:
                    break
                except InvalidInputError:
                    # Reading found a problem (an over-long line) after the blocks in
                    # flight: any problem of theirs comes first in the file, so it wins.
                    while pending:
                        pending.popleft().result()
                    raise
                pending.append(pool.submit(_parse_block, block, spec))
                while len(pending) > PARSE_THREADS:  # bounded: read one block ahead
                    parts.append(pending.popleft().result())  # in file order: first wins
            while pending:
                parts.append(pending.popleft().result())
        finally:
            for future in pending:  # a problem ends the read: parse nothing further
                future.cancel()
    return parts


def _split_lines(data: bytes) -> list[bytes]:
    lines = _LINE_END.split(data)
    if lines and not lines[-1]:
        lines.pop()  # the final line end ends a line; it does not start one
    return lines


def _record_lines(block: _Block) -> np.ndarray:
    """Physical line number of each record pyarrow reads (it skips empty lines)."""
    data = block.data
    n_lines = block.line_ends + (0 if data.endswith((b"\n", b"\r")) else 1)
    if not block.has_empty_line:
        return np.arange(block.first_line, block.first_line + n_lines, dtype=np.int64)
    lengths = np.fromiter(map(len, _split_lines(data)), dtype=np.int64)
    return np.flatnonzero(lengths > 0).astype(np.int64) + block.first_line


def _multiline(block: _Block) -> _Problem:
    """Where a quote opens that no quote on the same line closes."""
    for i, line in enumerate(_split_lines(block.data)):
        if line.count(b'"') % 2:
            col = line[: line.rfind(b'"')].count(b",") + 1
            return _Problem(
                block.first_line + i, col, "unterminated quote (a line end inside a cell?)"
            )
    return _Problem(block.first_line, 0, "malformed CSV (records do not match lines)")


def _final_quote(block: _Block) -> _Problem | None:
    # pyarrow closes a quote left open at the end of the file; a cut file must not load.
    lines = _split_lines(block.data)
    if not lines or not lines[-1].count(b'"') % 2:
        return None
    col = lines[-1][: lines[-1].rfind(b'"')].count(b",") + 1
    message = "unterminated quote at the end of the file (truncated file?)"
    return _Problem(block.first_line + len(lines) - 1, col, message)


def _unparsable(block: _Block, name: str) -> InvalidInputError:
    """pyarrow refused the block: say where the records went wrong."""
    return _at(_multiline(block), name)


def _not_utf8(block: _Block, exc: UnicodeDecodeError, name: str) -> InvalidInputError:
    before = block.data[: exc.start]
    line_start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
    line = block.first_line + _line_ends(before)
    col = before[line_start:].count(b",") + 1
    return InvalidInputError("is not UTF-8 text", location=f"{name}:{line}:{col}")


def _at(problem: _Problem, name: str) -> InvalidInputError:
    column = f":{problem.column}" if problem.column else ""
    return InvalidInputError(problem.message, location=f"{name}:{problem.line}{column}")


# -- vectorised checks -------------------------------------------------------------------


def _validate(table: pa.Table, lines: np.ndarray, spec: _Spec) -> tuple[_Part, list[_Problem]]:
    """Types, finiteness, ranges, classes and cards: the block's columns and its problems."""
    problems: list[_Problem] = []

    def at(index: int, col: int, message: str) -> None:
        problems.append(_Problem(int(lines[index]), col + 1, message))

    cells = [table.column(i).combine_chunks() for i in range(spec.width)]
    empty = _Part(
        lines[:0],
        {c: np.empty(0) for c in NUMERIC_COLUMNS},
        np.empty(0, np.int64),
        pa.array([], pa.string()),
    )
    if table.num_rows == 0:
        return empty, problems
    for col, values in enumerate(cells):
        too_long = pc.greater(pc.utf8_length(values), MAX_FIELD_CHARS)
        if pc.any(too_long).as_py():
            at(_first_true(too_long), col, f"field is longer than {MAX_FIELD_CHARS} characters")
    if problems:
        return empty, problems  # the other checks would echo the huge cell

    numbers: dict[str, np.ndarray] = {}
    for col, column in enumerate(NUMERIC_COLUMNS):
        parsed = _numeric(cells[col])
        bad = ~np.isfinite(parsed)
        if bad.any():
            i = int(np.argmax(bad))
            at(i, col, f"column {column!r}: {_show(cells[col][i].as_py())} is not a finite number")
        elif column in ("Time", "Amount") and (parsed < 0).any():
            i = int(np.argmax(parsed < 0))
            at(i, col, f"column {column!r}: {parsed[i]} is negative")
        numbers[column] = parsed

    label_col = KAGGLE_COLUMNS.index("Class")
    trimmed = pc.utf8_trim_whitespace(cells[label_col])
    ok = pc.is_in(trimmed, value_set=pa.array(["0", "1"]))
    if not pc.all(ok).as_py():
        i = _first_true(pc.invert(ok))
        at(i, label_col, f"column 'Class': {_show(cells[label_col][i].as_py())} is not 0 or 1")
    labels = pc.equal(trimmed, "1").to_numpy(zero_copy_only=False).astype(np.int64)

    if spec.has_cards:
        card_col = len(KAGGLE_COLUMNS)
        card_numbers, problem = _normalize_cards(cells[card_col], lines, card_col, spec.checked)
        if problem is not None:
            problems.append(problem)
    else:
        card_numbers = _assign_cards(cells, spec.pool_size, spec.bin_prefix)
    if problems:
        return empty, problems
    return _Part(lines, numbers, labels, card_numbers), problems


def _first_true(mask: pa.Array) -> int:
    return int(np.argmax(mask.to_numpy(zero_copy_only=False)))


def _numeric(values: pa.Array) -> np.ndarray:
    try:
        return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Arrow's parser is strict (no surrounding spaces); pandas' decides, as it always
        # did, and marks what it cannot read as NaN for the finiteness check to report.
        raw = values.to_numpy(zero_copy_only=False)
        return pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)


def _normalize_cards(
    values: pa.Array, lines: np.ndarray, col: int, checked: dict[str, str | InvalidInputError]
) -> tuple[pa.Array, _Problem | None]:
    """Each distinct number checked once (a file has far fewer cards than rows)."""
    encoded = pc.dictionary_encode(values)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    normalized: list[str] = []
    bad: dict[int, str] = {}
    for i, raw in enumerate(encoded.dictionary.to_pylist()):
        result = checked.get(raw)
        if result is None:
            try:
                result = cards.normalize(raw, field=CARD_COLUMN)
            except InvalidInputError as exc:
                result = exc
            checked[raw] = result
        if isinstance(result, InvalidInputError):
            normalized.append("")
            bad[i] = result.detail
        else:
            normalized.append(result)
    if bad:
        is_bad = np.isin(indices, np.fromiter(bad, dtype=indices.dtype))
        row = int(np.argmax(is_bad))
        problem = _Problem(int(lines[row]), col + 1, f"card_number {bad[int(indices[row])]}")
        return pa.array([], pa.string()), problem
    return pc.take(pa.array(normalized, pa.string()), pa.array(indices)), None


def _assign_cards(cells: list[pa.Array], pool_size: int, bin_prefix: str) -> pa.Array:
    """Cards for a file without them, as :func:`cards.assign_card_number` defines them.

    The row's canonical text (its unquoted cells joined by commas) is built by Arrow;
    only the SHA-256 runs per row, and the card number once per pool index.
    """
    text = pc.binary_join_element_wise(*cells[: len(KAGGLE_COLUMNS)], ",")
    digests = b"".join(
        hashlib.sha256(row).digest()[:8] for row in text.cast(pa.binary()).to_pylist()
    )
    index = np.frombuffer(digests, dtype=">u8") % np.uint64(pool_size)
    pool, inverse = np.unique(index, return_inverse=True)
    numbers = [cards.make_card_number(int(i), bin_prefix) for i in pool]
    return pc.take(pa.array(numbers, pa.string()), pa.array(inverse.astype(np.int64)))


def _frame(parts: list[_Part]) -> pd.DataFrame:
    # One float block filled in place: pandas then keeps it without copying column by column.
    total = sum(p.rows for p in parts)
    grid = np.empty((len(NUMERIC_COLUMNS), total), dtype=np.float64)
    begin = 0
    for part in parts:
        for row, column in enumerate(NUMERIC_COLUMNS):
            grid[row, begin : begin + part.rows] = part.numbers[column]
        part.numbers.clear()  # copied: free it now, so the columns are never held twice
        begin += part.rows
    names = {"Time": "source_time", "Amount": "amount"}
    frame = pd.DataFrame(grid.T, columns=[names.get(c, c) for c in NUMERIC_COLUMNS], copy=False)
    frame.insert(0, "source_line", np.concatenate([p.lines for p in parts]))
    card_numbers = pa.chunked_array([p.card_numbers for p in parts], pa.string())
    frame.insert(1, CARD_COLUMN, card_numbers.to_numpy())
    frame["label"] = np.concatenate([p.labels for p in parts])
    return frame


def _show(value: object) -> str:
    text = str(value)
    # Cells are echoed so the user can find them, but never more than 6 characters: a
    # misplaced card number must not leak beyond what a masked number shows.
    return repr(text[:6] + "…") if len(text) > 6 else repr(text)
