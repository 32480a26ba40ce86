"""``make demo``: the whole local flow, end to end, on real engines.

Generate (or take) a CSV -> land it -> the real Airflow DAG loads, transforms,
snapshots, syncs the feature view and runs the real KFP pipeline -> serve the
real function -> score known-fraud and known-legit cards over HTTP.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from app.backends import Backends
from app.core import status
from app.core.config import home_dir, load_config
from app.core.errors import InvalidInputError
from app.core.ingest.reader import read_transactions
from app.local.generate import generate, write_csv
from app.local.ingest import ingest
from app.local.server import FunctionServer

CARDS_EACH = 3


def _say(msg: str) -> None:
    print(msg, flush=True)


def _step(n: int, total: int, title: str) -> Callable[[], float]:
    _say(f"[{n}/{total}] {title}")
    start = time.perf_counter()
    return lambda: time.perf_counter() - start


def known_cards(path: Path, pool_size: int, bin_prefix: str) -> tuple[list[str], list[str]]:
    """Cards whose latest transaction is a fraud, and cards that never saw one."""
    frame = read_transactions(path, pool_size=pool_size, bin_prefix=bin_prefix).frame
    ordered = frame.sort_values(["source_time", "source_line"], kind="stable")
    last = ordered.groupby("card_number", sort=False).tail(1)
    fraud_ever = set(frame.loc[frame["label"] == 1, "card_number"])
    fraud = list(last.loc[last["label"] == 1, "card_number"])
    legit = [c for c in last["card_number"] if c not in fraud_ever]
    return fraud[:CARDS_EACH], legit[:CARDS_EACH]


def run_demo(*, rows: int, data: Path | None, fraud_rate: float) -> int:
    cfg = load_config()
    timings: dict[str, float] = {}
    total = 5
    home = home_dir()
    _say(f"fraud-mlops demo: state in {home}")

    done = _step(1, total, "preparing data")
    if data is None:
        path = home / "inbox" / f"transactions-{rows}.csv"
        try:
            generated = generate(rows, fraud_rate=fraud_rate)
        except ValueError as exc:
            raise InvalidInputError(str(exc), location="--rows/--fraud-rate") from exc
        write_csv(generated.frame, path)
        _say(
            f"      generated {len(generated.frame):,} rows, "
            f"{int(generated.frame['Class'].sum())} fraud"
        )
    else:
        path = data
    fraud_cards, legit_cards = known_cards(path, cfg.cards.pool_size, cfg.cards.bin_prefix)
    timings["data"] = done()

    done = _step(
        2,
        total,
        f"landing {path.name}; Airflow runs DAG fraud_training "
        "(load, transform, snapshot, sync, pipeline)",
    )
    _say("      starting Airflow in-process (the first run also migrates its SQLite DB)")
    started = time.perf_counter()
    report = ingest(
        cfg,
        path,
        quiet=True,
        on_task=lambda t: _say(f"      done: {t} (+{time.perf_counter() - started:.1f}s)"),
    )
    timings["dag"] = done()
    for task, state in sorted(report.tasks.items()):
        if state != "success":
            _say(f"      {task}: {state}")
    if not report.ok:
        _say(f"DAG run failed; log: {report.log_path}")
        return 1

    done = _step(3, total, "reading lineage and the deployment")
    current = status.collect(Backends(cfg))
    timings["status"] = done()
    _say("      " + status.render(current).replace("\n", "\n      "))
    if not current["deployed"]:
        _say("no model is deployed (the gate refused it); nothing to serve")
        return 1

    done = _step(4, total, "serving the function with functions-framework; scoring cards over HTTP")
    scores: list[dict[str, Any]] = []
    with FunctionServer(cfg, log_path=home / "function.log") as url:
        for expected, cards in (("fraud", fraud_cards), ("legit", legit_cards)):
            for card in cards:
                t0 = time.perf_counter()
                resp = requests.post(url, json={"card_number": card}, timeout=30)
                ms = (time.perf_counter() - t0) * 1000
                body = resp.json()
                scores.append({"expected": expected, "status": resp.status_code, "ms": ms, **body})
        bad = requests.post(url, json={"card_number": "4111 1111 1111 1112"}, timeout=30)
        unknown = requests.post(url, json={"card_number": "4242424242424242"}, timeout=30)
    timings["serve"] = done()

    done = _step(5, total, "summary")
    table = pd.DataFrame(
        [
            {
                "expected": s["expected"],
                "card": s.get("card"),
                "p(fraud)": s.get("fraud_probability"),
                "flagged": s.get("is_fraud"),
                "http": s["status"],
                "ms": round(s["ms"], 1),
            }
            for s in scores
        ]
    )
    _say(table.to_string(index=False))
    _say(f"bad card number -> HTTP {bad.status_code}: {bad.json()['error']['message']}")
    _say(f"unknown card    -> HTTP {unknown.status_code}: {unknown.json()['error']['message']}")
    timings["summary"] = done()
    _say("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    ok = (
        all(s["status"] == 200 for s in scores)
        and bad.status_code == 400
        and unknown.status_code == 404
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo(rows=50_000, data=None, fraud_rate=0.0017))
