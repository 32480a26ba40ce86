"""Hostile CSVs through the real local load path: each loads, or is refused and changes nothing.

A home is seeded with one loaded, transformed and snapshotted file; every corpus file
then runs landing -> load_raw -> transform -> snapshot on a copy of that home, as the
DAG runs them. A refused file must leave every table of the warehouse (raw rows, the
training table, snapshots, lineage) byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.backends import Backends
from app.core import flow
from app.core.config import RuntimeConfig
from app.core.errors import InvalidInputError
from app.local.generate import generate, write_csv
from tests.support.csv_corpus import CorpusFile, base_frame, corpus, good_bytes, write

_LOCATION = re.compile(r"^(?P<name>[^:]+):(?P<line>\d+)(:(?P<col>\d+))?$")


def fingerprint(home: Path) -> dict[str, str]:
    """SHA-256 of every table's sorted contents in the home's warehouse (lineage included)."""
    cfg = RuntimeConfig.local(home)
    path = cfg.warehouse.path  # type: ignore[union-attr]
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL"
        ).fetchall()
        out = {}
        for schema, table in tables:
            query = f'SELECT * FROM "{schema}"."{table}" ORDER BY ALL'
            # One batch: the same rows hash the same whatever chunks the scan produced.
            data = con.sql(query).to_arrow_table().combine_chunks()
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, data.schema) as writer:
                writer.write_table(data)
            out[f"{schema}.{table}"] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
        return out
    finally:
        con.close()


def warehouse_bytes(home: Path) -> str:
    """SHA-256 of the warehouse file (and its WAL): a refused load must not write a byte."""
    digest = hashlib.sha256()
    for path in sorted(home.glob("warehouse.duckdb*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def raw_rows(home: Path) -> int:
    return Backends(RuntimeConfig.local(home)).warehouse.table_counts()["raw.transactions"]


def run_flow(services: Backends, path: Path, name: str) -> dict[str, object]:
    """The DAG's data tasks in order; the first error stops the run, as in the DAG."""
    landed = services.landing.land(path, name=name)
    conf = flow.RunConf.for_object(landed)
    loaded = flow.load_raw(services, conf)
    flow.transform(services)
    flow.snapshot(services, conf, loaded)
    return loaded


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeded")
    home = root / "home"
    day0 = write_csv(generate(150, seed=3).frame, root / "day0.csv")
    run_flow(Backends(RuntimeConfig.local(home)), day0, "day0.csv")
    return home


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[CorpusFile, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return write(root / "files", corpus(root))


def _copy(home: Path, dest: Path) -> Path:
    shutil.copytree(home, dest)
    return dest


def check_refusal(exc: InvalidInputError, name: str) -> str | None:
    """Why ``exc`` is not a clear refusal of ``name`` (None when it is)."""
    match = _LOCATION.match(exc.location or "")
    if match is None or match["name"] != name:
        return f"location {exc.location!r} does not name {name}:line"
    return None


def test_hostile_corpus_each_file_loads_or_is_refused_without_state_change(
    seeded_home: Path, corpus_files: list[tuple[CorpusFile, Path]], tmp_path: Path
) -> None:
    baseline_bytes = warehouse_bytes(seeded_home)
    baseline = fingerprint(seeded_home)
    baseline_rows = raw_rows(seeded_home)
    counts = dict.fromkeys(("tried", "loaded", "refused", "partial_loads", "rows_changed"), 0)
    failures: list[str] = []
    for i, (case, path) in enumerate(corpus_files):
        counts["tried"] += 1
        home = _copy(seeded_home, tmp_path / f"home{i}")
        services = Backends(RuntimeConfig.local(home))
        try:
            loaded = run_flow(services, path, case.name)
        except InvalidInputError as exc:
            counts["refused"] += 1
            if warehouse_bytes(home) != baseline_bytes:
                after = fingerprint(home)
                changed = [t for t in after if after.get(t) != baseline.get(t)]
                counts["partial_loads"] += bool(changed)
                counts["rows_changed"] += abs(raw_rows(home) - baseline_rows)
                failures.append(f"{case.name}: refused but rewrote the warehouse ({changed})")
            if case.good:
                failures.append(f"{case.name}: a good file was refused: {exc}")
                continue
            problem = check_refusal(exc, case.name)
            if problem is None and not (exc.location or "").startswith(case.name + case.location):
                problem = f"location {exc.location!r}, expected {case.name}{case.location}..."
            if problem is None and case.match not in str(exc):
                problem = f"message {str(exc)!r} lacks {case.match!r}"
            if problem:
                failures.append(f"{case.name}: {problem}")
            continue
        counts["loaded"] += 1
        if not case.good:
            failures.append(f"{case.name}: a bad file loaded {loaded['rows_loaded']} rows")
            continue
        if loaded["rows_loaded"] != case.rows:
            failures.append(f"{case.name}: loaded {loaded['rows_loaded']}, expected {case.rows}")
        if raw_rows(home) != baseline_rows + case.rows:
            failures.append(f"{case.name}: raw grew by {raw_rows(home) - baseline_rows}")
        # The same object again (a redelivered event): nothing more changes.
        before = warehouse_bytes(home)
        landed = services.landing.land(path, name=case.name)
        again = flow.load_raw(services, flow.RunConf.for_object(landed))
        if (again["rows_loaded"], again["already_loaded"]) != (0, True) or (
            warehouse_bytes(home) != before
        ):
            failures.append(f"{case.name}: a second run changed state")
    print(f"\nhostile CSV corpus: {counts}")  # for the README (pytest -s)
    assert failures == []
    assert counts["partial_loads"] == counts["rows_changed"] == 0
    assert counts["loaded"] == sum(c.good for c, _ in corpus_files)


def test_hostile_corpus_same_bytes_under_new_name_changes_nothing(
    seeded_home: Path, tmp_path: Path
) -> None:
    home = _copy(seeded_home, tmp_path / "home")
    services = Backends(RuntimeConfig.local(home))
    path = tmp_path / "good.csv"
    path.write_bytes(good_bytes(base_frame(), tmp_path))
    run_flow(services, path, "good.csv")
    before = fingerprint(home)
    again = run_flow(services, path, "good_copy.csv")
    assert (again["rows_loaded"], again["already_loaded"]) == (0, True)
    assert fingerprint(home) == before  # transform and snapshot reran: same contents


def test_hostile_corpus_bad_file_after_good_one_leaves_it_intact(
    seeded_home: Path, corpus_files: list[tuple[CorpusFile, Path]], tmp_path: Path
) -> None:
    """A refusal between loads: the earlier load, its snapshot and lineage stay as they were."""
    home = _copy(seeded_home, tmp_path / "home")
    services = Backends(RuntimeConfig.local(home))
    files = {c.name: p for c, p in corpus_files}
    run_flow(services, files["crlf.csv"], "crlf.csv")
    before = warehouse_bytes(home)
    for name in ("truncated_mid_row.csv", "card_luhn.csv", "invalid_utf8_cell.csv"):
        with pytest.raises(InvalidInputError):
            run_flow(services, files[name], name)
    assert warehouse_bytes(home) == before


# -- random edits --------------------------------------------------------------------------

_BYTES = st.one_of(
    st.sampled_from(
        [
            b'"',
            b",",
            b"\n",
            b"\r",
            b"\r\n",
            b"\x00",
            b"\xff",
            b"\xef\xbb\xbf",
            b"-",
            b"e",
            b".",
            b" ",
            b"1",
            b"nan",
            b"",
        ]
    ),
    st.binary(min_size=1, max_size=4),
)


@st.composite
def _edits(draw: st.DrawFn, size: int) -> list[tuple[str, int, bytes]]:
    ops = draw(
        st.lists(
            st.sampled_from(["replace", "insert", "delete", "truncate"]), min_size=1, max_size=4
        )
    )
    return [(op, draw(st.integers(0, size)), draw(_BYTES)) for op in ops]


def _apply(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    for op, at, value in edits:
        at = min(at, len(data))
        if op == "replace":
            data = data[:at] + value + data[at + len(value) :]
        elif op == "insert":
            data = data[:at] + value + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + 1 + len(value) :]
        else:
            data = data[:at]
    return data


@dataclass
class _Fuzz:
    home: Path
    files: Path
    good: bytes
    services: Backends
    state: str  # warehouse_bytes after the last load
    rows: int


@pytest.fixture(scope="module")
def fuzz(seeded_home: Path, tmp_path_factory: pytest.TempPathFactory) -> _Fuzz:
    root = tmp_path_factory.mktemp("fuzz")
    small = generate(100, fraud_rate=0.05, seed=9).frame.head(12)
    good = write_csv(small, root / "base.csv").read_bytes()
    (root / "files").mkdir()
    home = _copy(seeded_home, root / "home")
    services = Backends(RuntimeConfig.local(home))
    return _Fuzz(home, root / "files", good, services, warehouse_bytes(home), raw_rows(home))


_FUZZ_COUNTS = dict.fromkeys(("tried", "loaded", "refused", "partial_loads", "rows_changed"), 0)
_names = itertools.count()


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_load_raw_random_edits_load_cleanly_or_refuse_without_state_change(
    fuzz: _Fuzz, data: st.DataObject
) -> None:
    edited = _apply(fuzz.good, data.draw(_edits(len(fuzz.good))))
    name = f"fuzz{next(_names)}.csv"
    path = fuzz.files / name
    path.write_bytes(edited)
    _FUZZ_COUNTS["tried"] += 1
    landed = fuzz.services.landing.land(path, name=name)
    try:
        loaded = flow.load_raw(fuzz.services, flow.RunConf.for_object(landed))
    except InvalidInputError as exc:
        _FUZZ_COUNTS["refused"] += 1
        problem = check_refusal(exc, name)
        assert problem is None, problem
        if warehouse_bytes(fuzz.home) != fuzz.state:
            _FUZZ_COUNTS["partial_loads"] += 1
            _FUZZ_COUNTS["rows_changed"] += abs(raw_rows(fuzz.home) - fuzz.rows)
            pytest.fail(f"{name} was refused ({exc}) but the warehouse changed")
        return
    _FUZZ_COUNTS["loaded"] += 1
    # A clean load: all its rows (none for content already loaded), nothing else.
    rows = raw_rows(fuzz.home)
    assert rows == fuzz.rows + loaded["rows_loaded"]
    if loaded["already_loaded"]:
        assert warehouse_bytes(fuzz.home) == fuzz.state
    fuzz.state, fuzz.rows = warehouse_bytes(fuzz.home), rows


def test_load_raw_random_edits_counts_report(capsys: pytest.CaptureFixture[str]) -> None:
    # Runs after the property test (file order); prints what it saw, for the README.
    with capsys.disabled():
        print(f"\nrandom edits: {_FUZZ_COUNTS}")
    assert _FUZZ_COUNTS["partial_loads"] == _FUZZ_COUNTS["rows_changed"] == 0
