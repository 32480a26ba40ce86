"""Scoring against its physical floor, side by side in one run on one data set.

``python -m benchmarks.scoring`` (or :func:`scoring_bench`, which ``make bench`` calls)
builds ``cards`` cards x 35 model features in a fresh local home, syncs them into the
online store, deploys a LightGBM model trained on them, then measures, interleaved
sample by sample so both sides see the same machine:

- the store's ``fetch`` against a raw SQLite primary-key lookup of the same row on a
  kept connection (the floor any SQLite-backed store has), and against Feast's
  ``get_online_features`` on its own SQLite online store, run by
  ``benchmarks/feast_fetch.py`` in a venv of its own (``.tools/feast``: Feast is not a
  dependency of this project), or reported skipped with the reason;
- the in-process ``Scorer.score`` (validate, HMAC, fetch, predict) against its floor:
  the raw lookup plus the model's own single-row ``booster.predict`` on a numpy row.

Goals: fetch within 2x the raw lookup (so well over 10x faster than Feast), score
within 2x its floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.backends import Backends
from app.core import cards as card_numbers
from app.core.config import RuntimeConfig, TrainingConfig
from app.core.model.artifact import save_model
from app.core.model.features import feature_matrix
from app.core.model.split import time_split
from app.core.model.train import train_model
from app.core.schema import MODEL_FEATURES
from app.core.scoring import Scorer

REPO = Path(__file__).resolve().parents[1]
FEAST_VENV = REPO / ".tools" / "feast"
FEAST_SCRIPT = Path(__file__).with_name("feast_fetch.py")
UV = REPO / ".tools" / "bin" / "uv"


def scoring_bench(
    home: Path,
    cards: int = 20_000,
    samples: int = 20_000,
    *,
    feast: bool = True,
    training: TrainingConfig | None = None,
) -> dict[str, Any]:
    """Build ``cards`` cards in ``home`` (a fresh directory), measure; see the module doc.

    ``training`` sizes the model (the pipeline's defaults unless given).
    """
    home.mkdir(parents=True, exist_ok=True)
    cfg = RuntimeConfig.local(home)
    services = Backends(cfg)
    key = services.card_key.key(create=True)
    numbers = [_card_number(i) for i in range(cards)]
    frame = _feature_frame(numbers, key)

    store = services.online_store
    start = time.perf_counter()
    info = store.sync(frame, snapshot_id="bench-1")
    sync_seconds = time.perf_counter() - start
    start = time.perf_counter()
    store.sync(frame, snapshot_id="bench-2")  # over a full view, as every later sync is
    resync_seconds = time.perf_counter() - start

    model_dir = _deploy_model(services, frame, home, training or TrainingConfig())
    scorer = Scorer.from_services(services)
    start = time.perf_counter()
    scorer.warm()
    warm_ms = (time.perf_counter() - start) * 1000

    rng = np.random.default_rng(11)
    picks = rng.integers(0, cards, samples)
    ids = frame["card_id"].tolist()
    raw = sqlite3.connect(cfg.online_store.path, isolation_level=None)  # type: ignore[union-attr]
    raw_sql = (
        "SELECT card_masked, event_time, features, feature_timestamp, snapshot_id "
        "FROM feature_view WHERE card_id = ?"
    )
    booster = services.registry.load(services.endpoint.deployed()).booster  # type: ignore[arg-type]
    matrix = feature_matrix(frame)

    def raw_lookup(i: int) -> None:
        raw.execute(raw_sql, (ids[i],)).fetchone()

    def store_fetch(i: int) -> None:
        store.fetch(ids[i])

    def score(i: int) -> None:
        scorer.score(numbers[i])

    def floor(i: int) -> None:
        raw.execute(raw_sql, (ids[i],)).fetchone()
        booster.predict(matrix[i : i + 1])

    lookup_us, fetch_us = _interleaved(picks, raw_lookup, store_fetch)
    floor_us, score_us = _interleaved(picks, floor, score)
    raw.close()

    result: dict[str, Any] = {
        "cards": info.cards,
        "features": len(MODEL_FEATURES),
        "samples": samples,
        "sync_seconds": round(sync_seconds, 3),
        "resync_seconds": round(resync_seconds, 3),
        "warm_ms": round(warm_ms, 2),
        "model_trees": booster.num_trees(),
        "fetch": {
            "store": _summary(fetch_us),
            "sqlite_pk_lookup": _summary(lookup_us),
            "ratio_p50": _ratio(fetch_us, lookup_us, 50),
            "ratio_p99": _ratio(fetch_us, lookup_us, 99),
        },
        "score": {
            "scorer": _summary(score_us),
            "floor_lookup_plus_booster_predict": _summary(floor_us),
            "ratio_p50": _ratio(score_us, floor_us, 50),
            "ratio_p99": _ratio(score_us, floor_us, 99),
        },
    }
    if feast:
        # Feast takes milliseconds a fetch: 5,000 samples say its p99 well enough.
        result["fetch"]["feast"] = _feast(home, frame, [ids[i] for i in picks[:5000]])
        feast_p = result["fetch"]["feast"]
        if "p50_us" in feast_p:
            result["fetch"]["feast_over_store_p50"] = round(
                feast_p["p50_us"] / result["fetch"]["store"]["p50_us"], 1
            )
            result["fetch"]["feast_over_store_p99"] = round(
                feast_p["p99_us"] / result["fetch"]["store"]["p99_us"], 1
            )
    shutil.rmtree(model_dir, ignore_errors=True)
    return result


def _card_number(index: int) -> str:
    return card_numbers.make_card_number(index)


def _feature_frame(numbers: list[str], key: bytes) -> pd.DataFrame:
    """Cards' features shaped like the warehouse's: counts, amounts, a nullable gap."""
    rng = np.random.default_rng(7)
    n = len(numbers)
    data: dict[str, Any] = {
        "card_id": [card_numbers.card_id(number, key) for number in numbers],
        "card_masked": [card_numbers.mask(number) for number in numbers],
        "event_time": rng.uniform(0, 172_800, n),
    }
    for name in MODEL_FEATURES:
        data[name] = rng.normal(0.0, 1.5, n)
    data["amount"] = np.round(rng.lognormal(3.2, 1.3, n), 2)
    data["card_txn_count_1h"] = rng.integers(1, 5, n).astype(float)
    data["card_txn_count_24h"] = rng.integers(1, 30, n).astype(float)
    gap = rng.exponential(3600.0, n)
    gap[rng.random(n) < 0.1] = np.nan  # first transactions
    data["secs_since_prev_txn"] = gap
    frame = pd.DataFrame(data)
    # A label the features partly explain, so the model grows real trees.
    signal = -frame["V14"] - frame["V12"] + 0.5 * frame["card_txn_count_1h"]
    frame["label"] = (signal + rng.normal(0, 1.5, n) > 5.0).astype(int)
    return frame


def _deploy_model(
    services: Backends, frame: pd.DataFrame, home: Path, training: TrainingConfig
) -> Path:
    splits = time_split(
        frame.assign(txn_id=np.arange(len(frame))), holdout_fraction=0.2, validation_fraction=0.2
    )
    model = train_model(splits.train, splits.validation, training)
    model_dir = save_model(model, home / "bench-model")
    version = services.registry.register(
        artifact_path=model_dir,
        snapshot_id="bench-1",
        run_name="bench",
        threshold=model.threshold,
        metrics={"auprc": 0.0},
        params={},
    )
    services.endpoint.deploy(version, expected_champion=None)
    return model_dir


def _interleaved(
    picks: np.ndarray, first: Callable[[int], None], second: Callable[[int], None]
) -> tuple[list[float], list[float]]:
    """Each sample timed on both sides back to back, after a warm-up of both."""
    for i in picks[:500]:
        first(int(i))
        second(int(i))
    a: list[float] = []
    b: list[float] = []
    clock = time.perf_counter
    for i in picks:
        j = int(i)
        t0 = clock()
        first(j)
        t1 = clock()
        second(j)
        t2 = clock()
        a.append((t1 - t0) * 1e6)
        b.append((t2 - t1) * 1e6)
    return a, b


def _summary(us: list[float]) -> dict[str, float]:
    q = statistics.quantiles(us, n=100)
    return {
        "p50_us": round(q[49], 1),
        "p99_us": round(q[98], 1),
        "mean_us": round(statistics.fmean(us), 1),
    }


def _ratio(a: list[float], b: list[float], pct: int) -> float:
    qa = statistics.quantiles(a, n=100)[pct - 1]
    qb = statistics.quantiles(b, n=100)[pct - 1]
    return round(qa / qb, 2)


def _feast(home: Path, frame: pd.DataFrame, sample_ids: list[str]) -> dict[str, Any]:
    """Feast's fetch of the same rows, in Feast's own venv; or why it was skipped."""
    python = FEAST_VENV / "bin" / "python"
    if not python.exists():
        reason = _install_feast()
        if reason is not None:
            return {"skipped": reason}
    work = Path(tempfile.mkdtemp(prefix="feast-", dir=home))
    data = work / "features.parquet"
    columns = ["card_id", "event_time", *MODEL_FEATURES]
    out = frame[columns].copy()
    out["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        out.pop("event_time"), unit="s"
    )
    out.to_parquet(data)
    ids = work / "ids.json"
    ids.write_text(json.dumps(sample_ids))
    try:
        done = subprocess.run(
            [str(python), str(FEAST_SCRIPT), str(work), str(data), str(ids)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"skipped": f"feast_fetch.py did not finish: {exc}"}
    if done.returncode != 0:
        return {"skipped": f"feast_fetch.py failed: {done.stderr.strip()[-600:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _install_feast() -> str | None:
    """Make ``.tools/feast`` with uv; the reason it could not, or None."""
    if not UV.exists():
        return f"no uv at {UV} to make Feast's venv"
    steps = (
        [str(UV), "venv", "--python", "3.11", str(FEAST_VENV)],
        [str(UV), "pip", "install", "--python", str(FEAST_VENV / "bin" / "python"), "feast"],
    )
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(FEAST_VENV, ignore_errors=True)
            return f"{' '.join(step[1:3])} did not finish: {exc}"
        if done.returncode != 0:
            shutil.rmtree(FEAST_VENV, ignore_errors=True)
            return f"{' '.join(step[1:3])} failed: {done.stderr.strip()[-400:]}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--no-feast", action="store_true", help="skip the Feast comparison")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fraud-mlops-scoring-") as tmp:
        result = scoring_bench(
            Path(tmp), cards=args.cards, samples=args.samples, feast=not args.no_feast
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
