"""The loader's stages at a file's scale, next to DuckDB's own ``read_csv`` of the same file.

``loader_bench(csv, home)`` runs, in this order and in this process: the reader alone
(validate), the DAG's ``load_raw`` (validate again, key the cards, one transaction),
``transform`` and ``snapshot`` on a fresh local home under ``home``; then DuckDB's
``read_csv`` of the same file into an in-memory table, the engine's own speed as the
reference. Peak RSS is read after each stage (``ru_maxrss``: the process's peak so far,
so the reader's figure comes first, before anything else has grown the process).

``python -m benchmarks.loader [--rows N] [--csv PATH]`` prints the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from app.backends import Backends
from app.core import flow
from app.core.config import RuntimeConfig
from app.core.ingest.reader import read_transactions

T = TypeVar("T")
KAGGLE_ROWS = 284_807


def _rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def loader_bench(csv: Path, home: Path) -> dict[str, Any]:
    """Seconds per stage, ratios to DuckDB's ``read_csv``, and peak RSS after each stage."""
    out: dict[str, Any] = {"file_mib": round(csv.stat().st_size / 2**20, 1)}
    peak: dict[str, float] = {"start": _rss_mib()}

    def timed(key: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        value = fn()
        out[f"{key}_s"] = round(time.perf_counter() - start, 3)
        peak[key] = _rss_mib()
        return value

    parsed = timed("validate", lambda: read_transactions(csv))
    out["rows"] = len(parsed.frame)
    del parsed
    services = Backends(RuntimeConfig.local(home))
    landed = services.landing.land(csv)
    conf = flow.RunConf.for_object(landed)
    loaded = timed("load_raw", lambda: flow.load_raw(services, conf))
    timed("transform", lambda: flow.transform(services))
    timed("snapshot", lambda: flow.snapshot(services, conf, loaded))

    def duckdb_read_csv() -> None:
        con = duckdb.connect()
        try:
            con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [str(csv)])
        finally:
            con.close()

    timed("duckdb_read_csv", duckdb_read_csv)

    reference = out["duckdb_read_csv_s"]
    # load_raw validates the file itself (the task is self-contained): the load proper
    # is what it takes beyond the reader.
    out["load_only_s"] = round(max(out["load_raw_s"] - out["validate_s"], 0.0), 3)
    out["load_transform_snapshot_s"] = round(
        out["load_raw_s"] + out["transform_s"] + out["snapshot_s"], 3
    )
    out["ratio_to_duckdb_read_csv"] = {
        k: round(out[f"{k}_s"] / reference, 2) if reference else None
        for k in ("validate", "load_raw", "transform", "snapshot")
    }
    out["peak_rss_mib_after"] = peak
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=KAGGLE_ROWS)
    parser.add_argument("--csv", type=Path, default=None, help="an existing file to load")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fraud-mlops-loader-") as tmp:
        root = Path(tmp)
        csv = args.csv
        if csv is None:
            from app.local.generate import generate, write_csv

            csv = write_csv(generate(args.rows).frame, root / "bench.csv")
        result = loader_bench(csv, root / "home")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
