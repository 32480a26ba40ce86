"""Synthetic transactions shaped like the Kaggle / ULB file, with a card column.

Same columns, order and quoting as ``creditcard.csv`` (quoted header, bare
numbers, quoted ``"0"``/``"1"`` in ``Class``), plus a quoted ``card_number``
of Luhn-valid test numbers. Fraud comes in short bursts on compromised cards
and shifts a few PCA components, with overlap and stealthy cases, so it is
separable but not trivially: per-card velocity features help.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.core.cards import make_card_number
from app.core.schema import CARD_COLUMN, KAGGLE_COLUMNS, PCA_COLUMNS

TWO_DAYS = 172_800
# Per-component scale, decreasing like PCA variances in the real file.
_SCALES = np.linspace(1.9, 0.3, len(PCA_COLUMNS))
# Components that carry the fraud signal in the real data set, and their shift.
_FRAUD_SHIFT = {
    "V14": -3.0,
    "V12": -2.4,
    "V10": -2.0,
    "V17": -2.6,
    "V4": 1.9,
    "V11": 1.6,
    "V3": -1.5,
}


@dataclass(frozen=True)
class GeneratedData:
    frame: pd.DataFrame
    fraud_cards: tuple[str, ...]  # cards whose latest transaction is a fraud
    legit_cards: tuple[str, ...]  # cards with no fraud at all


def generate(
    rows: int = 50_000,
    *,
    fraud_rate: float = 0.0017,
    seed: int = 42,
    cards: int | None = None,
    bin_prefix: str = "400000",
) -> GeneratedData:
    if rows < 100:
        raise ValueError("rows must be at least 100")
    if not 0 < fraud_rate < 0.5:
        raise ValueError("fraud_rate must be in (0, 0.5)")
    rng = np.random.default_rng(seed)
    n_cards = cards or max(20, rows // 25)
    n_fraud = max(4, round(rows * fraud_rate))
    n_legit = rows - n_fraud

    # Legitimate traffic: heavy-tailed card activity, times over two days.
    weights = rng.pareto(1.5, n_cards) + 1
    legit_card = rng.choice(n_cards, size=n_legit, p=weights / weights.sum())
    legit_time = rng.integers(0, TWO_DAYS, n_legit)
    legit_v = rng.normal(0.0, _SCALES, (n_legit, len(PCA_COLUMNS)))
    # Hard negatives: a few legit rows that look like fraud.
    hard = rng.random(n_legit) < 0.0015
    legit_v[hard] += _shift_vector(0.8) * rng.uniform(0.5, 1.0, (hard.sum(), 1))
    legit_amount = np.round(rng.lognormal(3.2, 1.3, n_legit), 2)

    # Fraud: bursts of 1-5 transactions minutes apart on compromised cards.
    fraud_card = np.empty(n_fraud, dtype=np.int64)
    fraud_time = np.empty(n_fraud, dtype=np.int64)
    # A compromised card is blocked after its burst and reissued under a new
    # number, so its latest transaction is a fraud and bursts spread over time.
    fraud_card = np.empty(n_fraud, dtype=np.int64)
    fraud_time = np.empty(n_fraud, dtype=np.int64)
    burst_cards = rng.permutation(n_cards)
    next_card = n_cards
    i = b = 0
    while i < n_fraud:
        burst = min(int(rng.integers(1, 6)), n_fraud - i)
        if b < n_cards:
            card = int(burst_cards[b])
        else:  # more bursts than cards: a fresh card that only ever sees fraud
            card, next_card = next_card, next_card + 1
        b += 1
        start = int(rng.integers(0, TWO_DAYS - 3600))
        reissued = (legit_card == card) & (legit_time > start)
        legit_card[reissued] = next_card
        next_card += 1
        gaps = rng.integers(20, 600, burst).cumsum()
        fraud_card[i : i + burst] = card
        fraud_time[i : i + burst] = start + gaps
        i += burst
    strength = np.where(rng.random(n_fraud) < 0.3, 0.35, 1.0)[:, None]  # stealthy share
    fraud_v = rng.normal(0.0, _SCALES * 1.4, (n_fraud, len(PCA_COLUMNS)))
    fraud_v += _shift_vector(1.0) * strength * rng.uniform(0.6, 1.4, (n_fraud, 1))
    small = rng.random(n_fraud) < 0.5  # card testing: tiny amounts, then large ones
    fraud_amount = np.where(
        small,
        np.round(rng.uniform(0.5, 5.0, n_fraud), 2),
        np.round(rng.lognormal(5.0, 1.0, n_fraud), 2),
    )

    frame = pd.DataFrame(np.vstack([legit_v, fraud_v]), columns=list(PCA_COLUMNS))
    frame.insert(0, "Time", np.concatenate([legit_time, fraud_time]))
    frame["Amount"] = np.concatenate([legit_amount, fraud_amount])
    frame["Class"] = np.concatenate([np.zeros(n_legit, int), np.ones(n_fraud, int)])
    card_idx = np.concatenate([legit_card, fraud_card])
    frame[CARD_COLUMN] = [make_card_number(int(c), bin_prefix) for c in card_idx]
    frame = frame.sort_values("Time", kind="stable").reset_index(drop=True)

    last = frame.groupby(CARD_COLUMN, sort=False).tail(1)
    fraud_cards = tuple(last.loc[last["Class"] == 1, CARD_COLUMN])
    ever_fraud = set(frame.loc[frame["Class"] == 1, CARD_COLUMN])
    legit_cards = tuple(c for c in last[CARD_COLUMN] if c not in ever_fraud)
    return GeneratedData(frame=frame, fraud_cards=fraud_cards, legit_cards=legit_cards)


def _shift_vector(scale: float) -> np.ndarray:
    vec = np.zeros(len(PCA_COLUMNS))
    for name, shift in _FRAUD_SHIFT.items():
        vec[PCA_COLUMNS.index(name)] = shift * scale
    return vec


def write_csv(frame: pd.DataFrame, path: Path, *, with_cards: bool = True) -> Path:
    """Write in the Kaggle file's exact format (optionally with the card column)."""
    columns = [*KAGGLE_COLUMNS, CARD_COLUMN] if with_cards else list(KAGGLE_COLUMNS)
    header = ",".join(f'"{c}"' for c in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        fh.write(header + "\n")
        for begin in range(0, len(frame), _WRITE_CHUNK):
            fh.write(_lines(frame.iloc[begin : begin + _WRITE_CHUNK], with_cards) + "\n")
    tmp.replace(path)
    return path


_WRITE_CHUNK = 20_000


def _lines(chunk: pd.DataFrame, with_cards: bool) -> str:
    # Bare numbers, quoted class and card: the original's quoting.
    parts = [chunk["Time"].astype(np.int64).astype(str)]
    parts += [chunk[c].map(_num) for c in (*PCA_COLUMNS, "Amount")]
    parts.append('"' + chunk["Class"].astype(int).astype(str) + '"')
    if with_cards:
        parts.append('"' + chunk[CARD_COLUMN].astype(str) + '"')
    return "\n".join(parts[0].str.cat(pd.concat(parts[1:], axis=1), sep=","))


def _num(value: float) -> str:
    return format(value, ".15g")
