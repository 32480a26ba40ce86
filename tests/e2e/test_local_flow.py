"""The whole local flow on real engines: landing -> Airflow DAG -> kfp.local pipeline ->
DuckDB / SQLite stores -> functions-framework serving the function over HTTP.

One module-scoped platform, exercised in order; each test asserts concrete values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from app.backends import Backends
from app.cli.main import main as cli
from app.core import cards
from app.core.config import (
    CONFIG_ENV,
    GateConfig,
    LocalEndpointConfig,
    RuntimeConfig,
    SQLiteOnlineStoreConfig,
)
from app.core.errors import ConflictError, InvalidInputError
from app.core.records import traffic_bucket
from app.local.generate import GeneratedData, generate, write_csv
from app.local.ingest import ingest
from app.local.server import FunctionServer
from app.local.trigger import LocalAirflowTrigger

pytestmark = pytest.mark.e2e

ROWS = 6000
# A new version that passes the gate gets this share of cards until it is promoted.
CANARY_PERCENT = 25


@dataclass
class Platform:
    cfg: RuntimeConfig
    data: GeneratedData
    csv: Path
    tmp: Path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = RuntimeConfig.local(tmp / "home")
    # A modest bar: this small data set has ~24 holdout frauds.
    cfg = cfg.model_copy(
        update={
            "gate": GateConfig(min_auprc=0.3, min_roc_auc=0.8),
            "endpoint": LocalEndpointConfig(
                path=tmp / "home" / "endpoint.sqlite", canary_traffic_percent=CANARY_PERCENT
            ),
        }
    )
    data = generate(ROWS, fraud_rate=0.02, seed=5)
    csv = write_csv(data.frame, tmp / "transactions.csv")
    report = ingest(cfg, csv, quiet=True)
    assert report.ok, report
    return Platform(cfg=cfg, data=data, csv=csv, tmp=tmp)


@pytest.fixture(scope="module")
def url(platform: Platform) -> Iterator[str]:
    with FunctionServer(platform.cfg, log_path=platform.tmp / "function.log") as base:
        yield base


def test_first_ingest_loads_snapshots_syncs_and_deploys(platform: Platform) -> None:
    wh = Backends(platform.cfg).warehouse
    lineage = Backends(platform.cfg).lineage
    counts = wh.table_counts()
    assert counts["raw.transactions"] == ROWS
    assert counts["training.transactions"] == ROWS
    (snap,) = lineage.snapshots()
    assert snap.row_count == ROWS
    assert snap.fraud_count == int(platform.data.frame["Class"].sum())
    assert wh.snapshot_content_hash(snap.snapshot_id) == snap.content_hash
    sync = Backends(platform.cfg).online_store.last_sync()
    assert sync is not None and sync.snapshot_id == snap.snapshot_id
    assert sync.cards == platform.data.frame["card_number"].nunique()
    deployed = Backends(platform.cfg).endpoint.deployed()
    assert deployed is not None
    assert deployed.version == "v0001"
    assert deployed.snapshot_id == snap.snapshot_id
    assert deployed.metrics["auprc"] >= 0.3
    # The first version has no champion to share with: it takes all traffic.
    assert Backends(platform.cfg).endpoint.traffic() == {"v0001": 100}
    (run,) = lineage.training_runs()
    assert run.deployed and run.model_version == "v0001"


def test_function_scores_known_cards_over_http(platform: Platform, url: str) -> None:
    fraud = [
        requests.post(url, json={"card_number": c}, timeout=30)
        for c in platform.data.fraud_cards[:5]
    ]
    legit = [
        requests.post(url, json={"card_number": c}, timeout=30)
        for c in platform.data.legit_cards[:20]
    ]
    assert all(r.status_code == 200 for r in fraud + legit)
    body = fraud[0].json()
    card = platform.data.fraud_cards[0]
    assert body["card"] == f"{card[:6]}******{card[-4:]}"
    assert set(body) >= {
        "card",
        "fraud_probability",
        "is_fraud",
        "threshold",
        "model_version",
        "features_as_of",
    }
    assert body["model_version"] == "v0001"
    mean_fraud = sum(r.json()["fraud_probability"] for r in fraud) / len(fraud)
    mean_legit = sum(r.json()["fraud_probability"] for r in legit) / len(legit)
    assert mean_fraud > mean_legit
    assert sum(r.json()["is_fraud"] for r in fraud) >= 3


def test_function_error_codes_over_http(url: str) -> None:
    assert requests.get(url, timeout=10).status_code == 405
    assert requests.post(url, data="card_number=1", timeout=10).status_code == 415
    bad = requests.post(url, json={"card_number": "4000 0000 0000 0001"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "card_number"
    unknown = requests.post(url, json={"card_number": "4242424242424242"}, timeout=10)
    assert unknown.status_code == 404
    assert "4242424242424242" not in unknown.text


def test_same_file_landed_again_adds_nothing_and_trains_once(platform: Platform) -> None:
    report = ingest(platform.cfg, platform.csv, quiet=True)
    assert report.ok
    assert report.tasks["check_new_data"] == "success"
    assert report.tasks["load_raw"] == "skipped"
    assert report.tasks["run_training_pipeline"] == "skipped"
    wh = Backends(platform.cfg).warehouse
    lineage = Backends(platform.cfg).lineage
    assert wh.table_counts()["raw.transactions"] == ROWS
    assert len(lineage.snapshots()) == 1
    assert len(lineage.training_runs()) == 1


def test_bad_file_fails_cleanly_and_touches_nothing(platform: Platform) -> None:
    wh = Backends(platform.cfg).warehouse
    lineage = Backends(platform.cfg).lineage
    store = Backends(platform.cfg).online_store
    before = (wh.table_counts(), lineage.snapshots(), store.last_sync())
    text = platform.csv.read_text()
    truncated = platform.tmp / "truncated.csv"
    truncated.write_text(text[: len(text) // 2])
    report = ingest(platform.cfg, truncated, quiet=True)
    assert not report.ok
    assert report.tasks["load_raw"] == "failed"
    # The task's error crossed the process boundary as data: class, message, location.
    assert report.failure is not None
    assert report.failure.task == "load_raw"
    assert report.failure.error_class == "InvalidInputError"
    assert report.failure.location is not None
    assert report.failure.location.startswith("truncated.csv:")
    with pytest.raises(InvalidInputError, match="truncated.csv") as caught:
        report.raise_for_error()
    assert caught.value.location == report.failure.location
    assert (wh.table_counts(), lineage.snapshots(), store.last_sync()) == before
    deployed = Backends(platform.cfg).endpoint.deployed()
    assert deployed is not None and deployed.version == "v0001"


def test_gate_refuses_model_and_previous_keeps_serving(platform: Platform, url: str) -> None:
    strict = platform.cfg.model_copy(
        update={"gate": GateConfig(min_auprc=0.9999, min_roc_auc=0.9999)}
    )
    report = ingest(strict, platform.csv, force=True, quiet=True)
    assert report.ok and report.tasks["run_training_pipeline"] == "success"
    wh = Backends(platform.cfg).warehouse
    lineage = Backends(platform.cfg).lineage
    runs = lineage.training_runs()
    assert len(runs) == 2
    assert not runs[-1].deployed
    assert "0.9999" in runs[-1].gate_reason
    assert wh.table_counts()["raw.transactions"] == ROWS
    deployed = Backends(platform.cfg).endpoint.deployed()
    assert deployed is not None and deployed.version == "v0001"
    resp = requests.post(url, json={"card_number": platform.data.fraud_cards[0]}, timeout=30)
    assert resp.status_code == 200 and resp.json()["model_version"] == "v0001"


def test_file_dropped_into_landing_folder_triggers_dag_run(platform: Platform) -> None:
    """The real Kaggle format (no card column), put into the folder by plain copy."""
    extra = generate(2000, fraud_rate=0.02, seed=9).frame
    landing_dir = Path(Backends(platform.cfg).landing.location)
    dropped = write_csv(extra, landing_dir / "creditcard-day2.csv", with_cards=False)
    settled = time.time() - 60  # the copy finished a minute ago
    os.utime(dropped, (settled, settled))
    (report,) = LocalAirflowTrigger(platform.cfg).watch(once=True)
    assert report.ok, report
    assert report.object_name == "creditcard-day2.csv"
    assert report.tasks["run_training_pipeline"] == "success"
    wh = Backends(platform.cfg).warehouse
    lineage = Backends(platform.cfg).lineage
    assert wh.table_counts()["raw.transactions"] == ROWS + 2000
    latest = lineage.latest_snapshot()
    assert latest is not None
    assert latest.source_object == "creditcard-day2.csv"
    assert latest.row_count == ROWS + 2000
    runs = lineage.training_runs(latest.snapshot_id)
    assert len(runs) == 1 and runs[0].gate_reason
    assert LocalAirflowTrigger(platform.cfg).watch(once=True) == []
    # More data, a better model: it beat v0001 on the same holdout and went in as canary.
    assert runs[0].deployed and runs[0].model_version == "v0002", runs[0].gate_reason
    assert "deployed v0001 scores AUPRC" in runs[0].gate_reason
    endpoint = Backends(platform.cfg).endpoint
    assert endpoint.traffic() == {"v0001": 100 - CANARY_PERCENT, "v0002": CANARY_PERCENT}
    champion = endpoint.deployed()
    assert champion is not None and champion.version == "v0001"


def _versions(url: str, numbers: list[str]) -> dict[str, str]:
    served = {}
    for number in numbers:
        resp = requests.post(url, json={"card_number": number}, timeout=30)
        assert resp.status_code == 200, resp.text
        served[number] = resp.json()["model_version"]
    return served


def test_canary_splits_cards_over_http_then_promote_and_rollback_through_the_cli(
    platform: Platform,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    numbers = sorted(platform.data.frame["card_number"].unique())
    key = Backends(platform.cfg).card_key.key()

    served = _versions(url, numbers)

    # Every card is scored by the version its keyed id hashes to, and keeps it.
    assert served == {
        n: "v0002" if traffic_bucket(cards.card_id(n, key)) < CANARY_PERCENT else "v0001"
        for n in numbers
    }
    assert set(served.values()) == {"v0001", "v0002"}
    assert _versions(url, numbers) == served

    monkeypatch.setenv(CONFIG_ENV, platform.cfg.to_json())
    assert cli(["promote"]) == 0
    assert capsys.readouterr().out == "traffic: v0002 100%\n"
    assert set(_versions(url, numbers[:40]).values()) == {"v0002"}

    assert cli(["rollback"]) == 0
    assert capsys.readouterr().out == "traffic: v0001 100%\n"
    assert set(_versions(url, numbers[:40]).values()) == {"v0001"}
    # v0001 was the first version: there is nothing further back.
    assert cli(["rollback"]) == ConflictError.exit_code
    assert Backends(platform.cfg).endpoint.traffic() == {"v0001": 100}


def test_function_store_unavailable_is_503_over_http(platform: Platform) -> None:
    broken = platform.cfg.model_copy(
        update={"online_store": SQLiteOnlineStoreConfig(path=platform.tmp / "absent.sqlite")}
    )
    with FunctionServer(broken, log_path=platform.tmp / "function-503.log") as base:
        resp = requests.post(base, json={"card_number": platform.data.fraud_cards[0]}, timeout=30)
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"]["status"] == "UNAVAILABLE"
    assert "Traceback" not in resp.text
    assert platform.data.fraud_cards[0] not in resp.text
