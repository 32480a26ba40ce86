"""Feast's ``get_online_features`` on its SQLite online store, timed one card at a time.

Run by :mod:`benchmarks.scoring` in Feast's own venv (``.tools/feast``; Feast is not a
dependency of this project, so nothing here imports the app):

    python benchmarks/feast_fetch.py WORK_DIR FEATURES.parquet IDS.json

``FEATURES.parquet`` holds ``card_id``, ``event_timestamp`` and the model features;
``IDS.json`` the card ids to fetch, in order. Prints one JSON line: p50/p99/mean in
microseconds of one ``get_online_features`` call for one card and every feature, as a
serving function would make it.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    import feast
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.types import Float64
    from feast.value_type import ValueType

    work, data, ids_file = Path(argv[0]), Path(argv[1]), Path(argv[2])
    frame = pd.read_parquet(data)
    names = [c for c in frame.columns if c not in ("card_id", "event_timestamp")]
    config = RepoConfig(
        project="fraud_bench",
        registry=str(work / "registry.db"),
        provider="local",
        online_store=SqliteOnlineStoreConfig(path=str(work / "online.db")),
        repo_path=str(work),
    )
    store = FeatureStore(config=config)
    card = Entity(name="card", join_keys=["card_id"], value_type=ValueType.STRING)
    view = FeatureView(
        name="card_features",
        entities=[card],
        schema=[Field(name=name, dtype=Float64) for name in names],
        source=FileSource(path=str(data), timestamp_field="event_timestamp"),
        online=True,
    )
    store.apply([card, view])
    start = time.perf_counter()
    store.write_to_online_store("card_features", frame)
    write_seconds = time.perf_counter() - start

    refs = [f"card_features:{name}" for name in names]
    ids: list[str] = json.loads(ids_file.read_text())
    for card_id in ids[:200]:
        store.get_online_features(features=refs, entity_rows=[{"card_id": card_id}]).to_dict()
    us: list[float] = []
    for card_id in ids:
        t0 = time.perf_counter()
        got = store.get_online_features(features=refs, entity_rows=[{"card_id": card_id}])
        got.to_dict()
        us.append((time.perf_counter() - t0) * 1e6)
    check = store.get_online_features(features=refs, entity_rows=[{"card_id": ids[0]}]).to_dict()
    expected = frame.set_index("card_id").loc[ids[0], names[0]]
    q = statistics.quantiles(us, n=100)
    result: dict[str, Any] = {
        "feast_version": feast.__version__,
        "samples": len(us),
        "p50_us": round(q[49], 1),
        "p99_us": round(q[98], 1),
        "mean_us": round(statistics.fmean(us), 1),
        "write_to_online_store_seconds": round(write_seconds, 3),
        "same_value_as_source": bool(abs(check[names[0]][0] - expected) < 1e-9),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
