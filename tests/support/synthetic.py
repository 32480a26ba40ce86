"""A synthetic training frame shaped like ``TRAINING_SCHEMA``, with a learnable fraud signal.

For tests and offline demos: the real ULB file is 150 MB and not redistributable here.
Fraud shifts a few PCA components and the amount (as in the real data, where V14,
V12, V10 and V17 carry most of the signal), with enough overlap that AUPRC is
clearly above the fraud rate yet below 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.core.schema import PCA_COLUMNS, RAW_SCHEMA, TRAINING_SCHEMA

SECONDS_PER_DAY = 86_400.0

# Component -> mean shift for fraud rows.
_SIGNAL = {"V14": -4.0, "V12": -3.2, "V10": -2.6, "V17": -3.0, "V4": 2.4}


def synthetic_training_frame(
    rows: int = 5000,
    *,
    fraud_rate: float = 0.03,
    cards: int = 300,
    seed: int = 0,
    days: float = 2.0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    event_time = np.sort(rng.uniform(0.0, days * SECONDS_PER_DAY, rows)).round(0)
    label = (rng.random(rows) < fraud_rate).astype(np.int64)
    fraud = label == 1

    frame: dict[str, object] = {
        "txn_id": [f"synthetic-{seed}@{i + 1:07d}" for i in range(rows)],
        "event_time": event_time,
    }
    card_index = rng.integers(0, cards, rows)
    frame["card_id"] = [f"{seed:02d}{c:062x}" for c in card_index]
    frame["card_masked"] = [f"400000******{c % 10_000:04d}" for c in card_index]

    for column in PCA_COLUMNS:
        values = rng.normal(0.0, 1.0, rows)
        values[fraud] += _SIGNAL.get(column, 0.0) * rng.uniform(0.3, 1.2, int(fraud.sum()))
        frame[column] = values
    amount = rng.lognormal(3.0, 1.2, rows)
    amount[fraud] *= rng.uniform(1.0, 4.0, int(fraud.sum()))
    frame["amount"] = amount.round(2)

    # Rough stand-ins for the point-in-time card features the warehouse SQL computes.
    count_1h = rng.poisson(1.2, rows) + 1 + fraud * rng.poisson(1.0, rows)
    count_24h = count_1h + rng.poisson(4.0, rows)
    avg_24h = rng.lognormal(3.0, 0.8, rows)
    std_24h = avg_24h * rng.uniform(0.3, 1.0, rows)
    frame["card_txn_count_1h"] = count_1h.astype(np.int64)
    frame["card_txn_count_24h"] = count_24h.astype(np.int64)
    frame["card_amount_sum_24h"] = (avg_24h * count_24h).round(2)
    frame["card_amount_avg_24h"] = avg_24h.round(2)
    frame["card_amount_max_24h"] = np.maximum(avg_24h * 1.8, amount).round(2)
    frame["card_amount_zscore_24h"] = (amount - avg_24h) / std_24h
    secs = rng.exponential(3_600.0, rows)
    secs[rng.random(rows) < 0.1] = np.nan  # a card's first transaction has no predecessor
    frame["secs_since_prev_txn"] = secs
    frame["label"] = label
    return pd.DataFrame(frame)[[c.name for c in TRAINING_SCHEMA]]


def synthetic_raw_frame(
    rows: int = 5000,
    *,
    fraud_rate: float = 0.03,
    cards: int = 300,
    seed: int = 0,
    days: float = 2.0,
) -> pd.DataFrame:
    """The same transactions as ``Warehouse.load_raw`` takes them: the warehouse SQL then
    computes the card features itself."""
    frame = synthetic_training_frame(rows, fraud_rate=fraud_rate, cards=cards, seed=seed, days=days)
    frame["source_line"] = np.arange(2, rows + 2, dtype=np.int64)  # line 1 is the CSV header
    frame["source_time"] = frame["event_time"]
    added_on_load = {"ingest_id", "source_object", "event_time", "loaded_at"}
    return frame[[c.name for c in RAW_SCHEMA if c.name not in added_on_load]]
