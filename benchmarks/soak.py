"""Load and soak on loopback: a burst, then a feature-view re-sync and a model
promotion under steady load, with every response checked.

A response must be what its own (card, snapshot, model version) scores offline: the
probability equals the version's model on that snapshot's features for the card, the
threshold is that version's, and ``features_as_of`` is the one its ``snapshot_id``
was synced with. A response that mixes two syncs or two versions fails one of those.
The load comes from a thread pool here (it must read bodies, which hey does not).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import requests

from app.core import cards as card_ids
from app.core.model.artifact import FraudModel
from app.core.schema import MODEL_FEATURES
from benchmarks.http_load import percentile


@dataclass
class Sample:
    phase: str
    card: str
    sent: float  # scheduled send time, monotonic: latency counts any queueing here
    latency_ms: float
    status: int  # 0: transport error
    body: dict[str, Any] | None


@dataclass
class PacedLoad:
    """Open-loop requests at a rate set per phase, from a pool of client threads."""

    url: str
    cards: Sequence[str]
    threads: int = 16
    samples: list[Sample] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _one(self, phase: str, card: str, scheduled: float) -> None:
        body: dict[str, Any] | None = None
        try:
            resp = self._session().post(self.url, json={"card_number": card}, timeout=10)
            status = resp.status_code
            # A failure keeps its text: the report says what failed, not just how often.
            body = resp.json() if status == 200 else {"error_text": resp.text[:300]}
        except (requests.RequestException, ValueError) as exc:
            status = 0
            body = {"error_text": f"{type(exc).__name__}: {exc}"[:300]}
        latency = (time.monotonic() - scheduled) * 1000
        with self._lock:
            self.samples.append(Sample(phase, card, scheduled, latency, status, body))

    def run(
        self,
        phase: str,
        rate: float,
        seconds: float,
        pool: ThreadPoolExecutor,
        during: Callable[[], Any] | None = None,
        at: float = 0.5,
    ) -> Any:
        """Send ``rate`` req/s for ``seconds``; call ``during`` at ``at`` of the way."""
        interval = 1.0 / rate
        total = max(1, math.floor(rate * seconds))
        start = time.monotonic()
        trigger = int(total * at)
        holder: dict[str, Any] = {}
        worker: threading.Thread | None = None

        def side() -> None:
            assert during is not None
            try:
                holder["value"] = during()
            except Exception as exc:  # re-raised below, on the caller's thread
                holder["error"] = exc

        futures = []
        for i in range(total):
            scheduled = start + i * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            card = self.cards[(len(self.samples) + i) % len(self.cards)]
            futures.append(pool.submit(self._one, phase, card, scheduled))
            if during is not None and i == trigger:
                # Run on its own thread: the pacing loop must not stop for it.
                worker = threading.Thread(target=side)
                worker.start()
        for f in futures:
            f.result()
        if worker is not None:
            worker.join()
        if "error" in holder:
            raise holder["error"]
        return holder.get("value")


def _ok(s: Sample) -> bool:
    return s.status == 200 and s.body is not None


def phase_stats(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for phase in dict.fromkeys(s.phase for s in samples):
        mine = [s for s in samples if s.phase == phase]
        ok = sorted(s.latency_ms for s in mine if s.status == 200)
        out[phase] = {
            "requests": len(mine),
            "errors": sum(1 for s in mine if s.status != 200),
            "p50_ms": round(percentile(ok, 50), 2) if ok else None,
            "p99_ms": round(percentile(ok, 99), 2) if ok else None,
            "max_ms": round(ok[-1], 2) if ok else None,
            "statuses": {
                str(code): sum(1 for s in mine if s.status == code)
                for code in sorted({s.status for s in mine})
            },
            "versions": sorted({str((s.body or {})["model_version"]) for s in mine if _ok(s)}),
            "snapshots": sorted({str((s.body or {})["snapshot_id"]) for s in mine if _ok(s)}),
        }
    return out


@dataclass(frozen=True)
class Oracle:
    """What each (card, snapshot, version) must score, computed offline."""

    key: bytes
    features: dict[str, pd.DataFrame]  # snapshot_id -> card features indexed by card_id
    models: dict[str, FraudModel]  # version -> model
    synced_at: dict[str, str]  # snapshot_id -> the features_as_of its sync wrote

    def expected(self, card: str, snapshot_id: str, version: str) -> float:
        frame = self.features[snapshot_id]
        cid = card_ids.card_id(card_ids.normalize(card), self.key)
        x = frame.loc[[cid], list(MODEL_FEATURES)].to_numpy(dtype=np.float64)
        return float(self.models[version].predict(x)[0])


def check(samples: Sequence[Sample], oracle: Oracle) -> dict[str, Any]:
    """Every 200 against the oracle; returns counts and the first few problems."""
    problems: list[str] = []
    as_of: dict[str, set[str]] = {}
    checked = 0
    cache: dict[tuple[str, str, str], float] = {}
    for s in samples:
        if s.status != 200 or s.body is None:
            continue
        snap, version = str(s.body["snapshot_id"]), str(s.body["model_version"])
        as_of.setdefault(snap, set()).add(str(s.body["features_as_of"]))
        if snap not in oracle.features or version not in oracle.models:
            problems.append(f"{s.phase}: unknown snapshot {snap} or version {version}")
            continue
        key = (s.card, snap, version)
        if key not in cache:
            cache[key] = oracle.expected(s.card, snap, version)
        want = round(cache[key], 6)
        got = float(s.body["fraud_probability"])
        threshold = round(oracle.models[version].threshold, 6)
        if abs(got - want) > 2e-6:
            problems.append(
                f"{s.phase}: {s.body['card']} {snap}/{version} scored {got}, offline {want}"
            )
        elif abs(float(s.body["threshold"]) - threshold) > 2e-6:
            problems.append(f"{s.phase}: {version} answered with another version's threshold")
        checked += 1
    for snap, stamps in as_of.items():
        want_stamp = oracle.synced_at.get(snap)
        if len(stamps) != 1 or (want_stamp is not None and stamps != {want_stamp}):
            problems.append(f"snapshot {snap} came with features_as_of {sorted(stamps)}")
    failed = [s for s in samples if s.status != 200]
    return {
        "responses": len(samples),
        "errors": len(failed),
        "error_samples": [
            f"{s.phase}: {s.status} {(s.body or {}).get('error_text', '')}" for s in failed[:5]
        ],
        "checked": checked,
        "mixed": len(problems),
        "problems": problems[:10],
        "ok": not failed and not problems and checked > 0,
    }


def summary_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, default=str)
