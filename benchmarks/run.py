"""``make bench``: the flow's stages at Kaggle scale, timed, with memory, written as JSON.

Runs the real engines in-process (the DAG's task functions, the kfp.local
pipeline, the function under functions-framework on loopback) on generated
data of the Kaggle file's size (284,807 rows) unless ``--rows`` says otherwise.
Speed goals live here, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests

from app.backends import Backends
from app.core import flow
from app.core.config import RuntimeConfig
from app.core.ingest.reader import read_transactions
from app.local.generate import generate, write_csv
from app.local.pipeline_template import ensure_pipeline_template
from app.local.server import FunctionServer

T = TypeVar("T")
KAGGLE_ROWS = 284_807
PEAK_AFTER: dict[str, float] = {}


def _timed(results: dict[str, Any], name: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = fn()
    results[name] = round(time.perf_counter() - start, 3)
    # Peak RSS so far: read stage by stage, it says which stage set the peak.
    PEAK_AFTER[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"{name}: {results[name]:.2f}s", file=sys.stderr, flush=True)
    return value


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100)
    return {
        "p50_ms": round(q[49], 2),
        "p95_ms": round(q[94], 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def run(rows: int, n_requests: int, home: Path) -> dict[str, Any]:
    cfg = RuntimeConfig.local(home)
    seconds: dict[str, Any] = {}
    data = _timed(seconds, "generate", lambda: generate(rows))
    csv = _timed(seconds, "write_csv", lambda: write_csv(data.frame, home / "bench.csv"))
    _timed(seconds, "parse_validate", lambda: read_transactions(csv))
    services = Backends(cfg)
    landed = _timed(seconds, "land", lambda: services.landing.land(csv))
    conf = flow.RunConf.for_object(landed)
    _timed(seconds, "load_raw", lambda: flow.load_raw(services, conf))
    _timed(seconds, "transform", lambda: flow.transform(services))
    snap = _timed(seconds, "snapshot", lambda: flow.snapshot(services, conf))
    sync = _timed(
        seconds, "sync_feature_view", lambda: flow.sync_feature_view(services, snap["snapshot_id"])
    )
    ensure_pipeline_template(cfg)
    trained = _timed(seconds, "pipeline", lambda: flow.train(services, snap["snapshot_id"]))

    store = services.online_store
    card_ids = services.warehouse.latest_card_features(snap["snapshot_id"])["card_id"].tolist()
    fetch_ms = []
    for card_id in card_ids[:2000]:
        t0 = time.perf_counter()
        store.fetch(card_id)
        fetch_ms.append((time.perf_counter() - t0) * 1000)

    http: dict[str, Any] = {"requests": 0}
    if trained["deployed"]:
        cards = list(data.legit_cards) + list(data.fraud_cards)
        with FunctionServer(cfg) as url, requests.Session() as session:
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            wall = time.perf_counter()
            for i in range(n_requests):
                t0 = time.perf_counter()
                resp = session.post(url, json={"card_number": cards[i % len(cards)]}, timeout=30)
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            elapsed = time.perf_counter() - wall
        http = {
            "requests": n_requests,
            "statuses": statuses,
            "sequential_rps": round(n_requests / elapsed, 1),
            **_percentiles(latencies),
        }

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "rows": rows,
        "frauds": int(data.frame["Class"].sum()),
        "cards": sync["cards"],
        "seconds": seconds,
        "rows_per_second": {
            "parse_validate": round(rows / seconds["parse_validate"]),
            "load_raw": round(rows / seconds["load_raw"]),
            "transform": round(rows / seconds["transform"]),
        },
        "model": {
            "deployed": trained["deployed"],
            "version": trained["model_version"],
            "metrics": trained["metrics"],
            "gate": trained["gate_reason"],
        },
        "online_store_fetch": _percentiles(fetch_ms),
        "http_scoring": http,
        # ru_maxrss is KiB on Linux; children are the pipeline steps and the server.
        "peak_rss_mib": {
            "self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "self_after_stage": dict(PEAK_AFTER),
            # Forked children inherit the parent's pages, so this is at least the parent's peak.
            "largest_child": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=KAGGLE_ROWS)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", default="benchmarks/results.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fraud-mlops-bench-") as tmp:
        result = run(args.rows, args.requests, Path(tmp))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
