"""The GCP data path, end to end, on the GCP backends: an object lands in the bucket
(fake-gcs-server), its OBJECT_FINALIZE notification triggers the DAG's tasks, which load,
transform and snapshot it in BigQuery (bqemulator) and sync the feature view (Vertex
Feature Store, a fake at its client boundary that materialises the view from the
emulator's source table as Vertex would); then the real function scores the card with
the Secret Manager key (a recorded fake) and the online features.

The pipeline, registry and endpoint roles stay local here (each role's kind is its own):
the model is trained in-process on the BigQuery snapshot and deployed to the local
endpoint, as the next issue's Vertex roles will do remotely.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import functions_framework
import google_crc32c
import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1

from app.backends import Backends
from app.backends.gcp.bigquery_warehouse import BigQueryLineage, BigQueryWarehouse
from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.gcs_landing import GcsLandingZone
from app.backends.gcp.secret_manager_card_key import SecretManagerCardKeySource
from app.backends.gcp.vertex_feature_store import VertexFeatureOnlineStore
from app.core import cards
from app.core.config import (
    CONFIG_ENV,
    BigQueryWarehouseConfig,
    GcsLandingConfig,
    RuntimeConfig,
    SecretManagerConfig,
    VertexOnlineStoreConfig,
)
from app.core.model.artifact import save_model
from app.core.model.split import time_split
from app.core.model.train import train_model
from app.core.records import PipelineResult
from app.core.schema import (
    FEATURE_VIEW_SCHEMA,
    MODEL_FEATURES,
    RAW_SCHEMA,
    TRAINING_SCHEMA,
    Column,
)
from app.local.generate import generate, write_csv
from tests.support.bqemulator import BqEmulator, bqemulator  # noqa: F401 - fixture
from tests.support.fake_gcs import FakeGcs, fake_gcs, fake_gcs_server  # noqa: F401 - fixtures
from tests.support.recording import RecordingClient

pytestmark = pytest.mark.emulators

ROOT = Path(__file__).resolve().parents[2]
POLICY = CallPolicy(timeout=15.0, deadline=30.0, initial=0.1, maximum=1.0)
SERVING = CallPolicy(timeout=2.0, deadline=4.0, initial=0.05, maximum=0.2)
KEY_VERSION = "projects/fraud-mlops-emu/secrets/card-key/versions/1"
KEY = bytes(range(32))
_DDL_TYPES = {"FLOAT64": "FLOAT64", "INT64": "INT64", "STRING": "STRING"}
_DDL_TYPES |= {"TIMESTAMP": "TIMESTAMP", "BOOL": "BOOL"}


def _ddl(columns: tuple[Column, ...]) -> str:
    return ", ".join(
        f"{c.name} {_DDL_TYPES[c.bq_type]}{' NOT NULL' if c.mode == 'REQUIRED' else ''}"
        for c in columns
    )


class FeatureStoreFake:
    """Vertex AI Feature Store at its client boundary: a sync materialises the view from
    the BigQuery source table (read from the emulator), a fetch answers from it."""

    def __init__(self, bq: Any, table: str) -> None:
        self.bq = bq
        self.table = table
        self.view: dict[str, dict[str, Any]] = {}
        self.synced_at: datetime | None = None
        self.admin = RecordingClient(
            {
                "sync_feature_view": self._sync,
                "get_feature_view_sync": lambda call: self._state(),
                "list_feature_view_syncs": lambda call: [self._state()] if self.synced_at else [],
            }
        )
        self.serving = RecordingClient({"fetch_feature_values": self._fetch})

    def _sync(self, call: Any) -> Any:
        rows = self.bq.query(f"SELECT * FROM `{self.table}`").result(timeout=30)
        self.view = {row["card_id"]: dict(row.items()) for row in rows}
        self.synced_at = datetime.now(UTC)
        return SimpleNamespace(feature_view_sync=f"{call.request['feature_view']}/syncs/1")

    def _state(self) -> aiplatform_v1.FeatureViewSync:
        assert self.synced_at is not None
        state = aiplatform_v1.FeatureViewSync(
            name="syncs/1", run_time={"end_time": {"seconds": int(self.synced_at.timestamp())}}
        )
        state.create_time = self.synced_at
        return state

    def _fetch(self, call: Any) -> aiplatform_v1.FetchFeatureValuesResponse:
        row = self.view.get(call.request.data_key.key)
        if row is None:
            raise gexc.NotFound("no such entity")
        pairs = aiplatform_v1.FetchFeatureValuesResponse.FeatureNameValuePairList
        features = []
        for name, value in row.items():
            if name == "card_id":
                continue
            if isinstance(value, str):
                fv = aiplatform_v1.FeatureValue(string_value=value)
            elif isinstance(value, datetime):
                fv = aiplatform_v1.FeatureValue(string_value=value.isoformat())
            elif value is None:
                fv = aiplatform_v1.FeatureValue()
            else:
                fv = aiplatform_v1.FeatureValue(double_value=float(value))
            features.append(pairs.FeatureNameValuePair(name=name, value=fv))
        return aiplatform_v1.FetchFeatureValuesResponse(key_values=pairs(features=features))


@dataclass
class GcpHome:
    cfg: RuntimeConfig
    services: Backends
    zone: GcsLandingZone
    store: FeatureStoreFake
    secrets: RecordingClient
    bucket: str
    bq: Any


def _secret_response(call: Any) -> Any:
    data = KEY.hex().encode()
    crc = int.from_bytes(google_crc32c.Checksum(data).digest(), "big")
    return SimpleNamespace(payload=SimpleNamespace(data=data, data_crc32c=crc))


@pytest.fixture
def home(
    tmp_path: Path,
    fake_gcs: FakeGcs,  # noqa: F811 - the fixture imported above
    bqemulator: BqEmulator,  # noqa: F811
) -> GcpHome:
    bq = bqemulator.client()
    project = bqemulator.project
    warehouse = BigQueryWarehouseConfig(
        project=project,
        raw_dataset="e2e_raw",
        training_dataset="e2e_training",
        snapshot_dataset="e2e_snapshot",
        lineage_dataset="e2e_lineage",
        api_endpoint=bqemulator.endpoint,
    )
    # Provisioned as the stack provisions it (components/warehouse_datasets.py).
    for dataset in ("e2e_raw", "e2e_training", "e2e_snapshot", "e2e_lineage", "e2e_features"):
        bq.delete_dataset(f"{project}.{dataset}", delete_contents=True, not_found_ok=True)
        bq.create_dataset(f"{project}.{dataset}", timeout=10)
    for statement in (
        f"CREATE TABLE `{project}.e2e_raw.transactions` ({_ddl(RAW_SCHEMA)})",
        f"CREATE TABLE `{project}.e2e_training.transactions` ({_ddl(TRAINING_SCHEMA)})",
        f"CREATE TABLE `{project}.e2e_features.card_features` ({_ddl(FEATURE_VIEW_SCHEMA)})",
    ):
        bq.query(statement, timeout=10).result(timeout=20)
    source_table = f"{project}.e2e_features.card_features"
    online = VertexOnlineStoreConfig(
        project=project,
        location="europe-west1",
        online_store_id="fmo_emu",
        feature_view_id="card_features",
        source_table_uri=f"bq://{source_table}",
        sync_poll_seconds=0.01,
    )
    bucket = fake_gcs.new_bucket()
    local = RuntimeConfig.local(tmp_path / "home")
    cfg = local.model_copy(
        update={
            "environment": "dev",
            "warehouse": warehouse,
            "online_store": online,
            "landing": GcsLandingConfig(bucket=bucket, subscription="fmo-landing"),
            "card_key": SecretManagerConfig(secret_version=KEY_VERSION),
        }
    )
    store = FeatureStoreFake(bq, source_table)
    secrets = RecordingClient({"access_secret_version": _secret_response})
    zone = GcsLandingZone(bucket, policy=POLICY, client=fake_gcs.client)
    services = Backends(cfg)
    # The GCP roles, with their clients pointed at the emulators and fakes; the rest of
    # the composition root (the local registry and endpoint) builds as configured.
    services.__dict__.update(
        warehouse=BigQueryWarehouse(warehouse, POLICY, client=bq),
        lineage=BigQueryLineage(warehouse, POLICY, client=bq),
        landing=zone,
        online_store=VertexFeatureOnlineStore(
            online,
            admin_policy=POLICY,
            serving_policy=SERVING,
            admin=store.admin,
            serving=store.serving,
            bigquery=bq,
        ),
        card_key=SecretManagerCardKeySource(KEY_VERSION, POLICY, client=secrets),
    )
    return GcpHome(cfg, services, zone, store, secrets, bucket, bq)


def _dag_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gcp_dag", ROOT / "app/dags/fraud_training.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finalize_event(bucket: str, name: str, generation: int) -> SimpleNamespace:
    """The asset event the AssetWatcher records for one OBJECT_FINALIZE message."""
    resource = {"bucket": bucket, "name": name, "generation": str(generation)}
    message = {
        "data": base64.b64encode(json.dumps(resource).encode()).decode(),
        "attributes": {
            "bucketId": bucket,
            "objectId": name,
            "objectGeneration": str(generation),
            "eventType": "OBJECT_FINALIZE",
            "payloadFormat": "JSON_API_V1",
        },
    }
    payload = {"status": "success", "message": [{"ack_id": "1", "message": message}]}
    return SimpleNamespace(extra={"from_trigger": True, "payload": payload})


@pytest.fixture
def run_task(home: GcpHome, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run one DAG task as Airflow would for a run triggered by a landing event."""
    monkeypatch.setenv(CONFIG_ENV, home.cfg.to_json())
    monkeypatch.setattr("app.backends.Backends", lambda cfg: home.services)
    module = _dag_module()
    dag = module.fraud_training_dag
    events: dict[str, list[Any]] = {}

    def context() -> dict[str, Any]:
        return {"dag_run": SimpleNamespace(conf={}), "triggering_asset_events": events}

    monkeypatch.setattr(module, "get_current_context", context)

    def run(task_id: str, *args: Any, event: SimpleNamespace | None = None) -> Any:
        if event is not None:
            events["fraud-mlops-landing"] = [event]
        return dag.get_task(task_id).python_callable(*args)

    yield run


def _deploy_model(home: GcpHome, snapshot_id: str, tmp_path: Path) -> str:
    frame = home.services.warehouse.read_snapshot(snapshot_id)
    splits = time_split(frame, holdout_fraction=0.2, validation_fraction=0.2)
    model = train_model(splits.train, splits.validation, home.cfg.training)
    version = home.services.registry.register(
        artifact_path=save_model(model, tmp_path / "model"),
        snapshot_id=snapshot_id,
        run_name=f"train-{snapshot_id}",
        threshold=model.threshold,
        metrics={"auprc": 0.0},
        params=model.params,
    )
    home.services.endpoint.deploy(version, expected_champion=None)
    return version.version


def test_gcp_data_path_object_lands_dag_loads_syncs_and_the_function_scores_the_card(
    home: GcpHome, run_task: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = generate(1500, fraud_rate=0.03, seed=21)
    csv = write_csv(data.frame, tmp_path / "day1.csv")
    landed = home.zone.land(csv)
    event = _finalize_event(home.bucket, landed.name, landed.generation)

    assert run_task("check_new_data", event=event) is True
    loaded = run_task("load_raw")
    assert (loaded["rows_loaded"], loaded["already_loaded"]) == (1500, False)
    assert loaded["content_hash"] == landed.content_hash  # computed while parsing
    assert run_task("transform") == 1500
    snap = run_task("snapshot", loaded)
    assert (snap["row_count"], snap["fraud_count"]) == (1500, int(data.frame["Class"].sum()))
    labels = home.bq.get_table(snap["table"]).labels  # lineage on the snapshot itself
    assert labels["source_generation"] == str(landed.generation)
    assert labels["row_count"] == "1500"
    synced = run_task("sync_feature_view", snap)
    assert synced["skipped"] is False
    assert synced["cards"] == data.frame["card_number"].nunique() == len(home.store.view)
    # The exact requests: one view sync of this view, waited for.
    view = (
        "projects/fraud-mlops-emu/locations/europe-west1/featureOnlineStores/fmo_emu/"
        "featureViews/card_features"
    )
    assert home.store.admin.calls[0].request == {"feature_view": view}
    assert home.store.admin.methods()[:2] == ["sync_feature_view", "get_feature_view_sync"]
    # Lineage in BigQuery says what was loaded from which object version.
    ingest = home.services.lineage.ingest_by_object(landed.name, landed.generation)
    assert ingest is not None and ingest.content_hash == landed.content_hash
    latest = home.services.lineage.latest_snapshot()
    assert latest is not None and latest.snapshot_id == snap["snapshot_id"]

    version = _deploy_model(home, snap["snapshot_id"], tmp_path)
    home.services.lineage.record_training_run(
        PipelineResult("train-1", snap["snapshot_id"], True, "deployed by the test", {}, version)
    )
    # The message redelivered: nothing runs twice, decided without reading the object.
    assert run_task("check_new_data", event=event) is False

    # The real function, on these backends.
    import app.function.main as function_main

    monkeypatch.setattr(function_main, "Backends", lambda cfg: home.services)
    function_main._scorer.cache_clear()
    client = functions_framework.create_app(
        target="predict", source=str(ROOT / "app/function/main.py")
    ).test_client()
    card = data.fraud_cards[0]
    resp = client.post("/", json={"card_number": card})
    function_main._scorer.cache_clear()

    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["card"] == f"{card[:6]}******{card[-4:]}"
    assert body["model_version"] == version
    assert body["snapshot_id"] == snap["snapshot_id"]
    assert 0.0 <= body["fraud_probability"] <= 1.0
    fetch = home.store.serving.calls[-1].request
    assert fetch.data_key.key == cards.card_id(card, KEY)  # keyed by the HMAC, never the PAN
    assert card not in resp.get_data(as_text=True)
    assert home.secrets.calls[0].request == {"name": KEY_VERSION}
    features = home.store.view[cards.card_id(card, KEY)]
    assert set(MODEL_FEATURES) <= set(features)


def test_gcp_data_path_malformed_object_names_file_line_column_and_loads_nothing(
    home: GcpHome, run_task: Any, tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from app.core.errors import InvalidInputError

    data = generate(300, fraud_rate=0.03, seed=22)
    csv = write_csv(data.frame, tmp_path / "broken.csv")
    lines = csv.read_text().splitlines()
    cells = lines[6].split(",")
    cells[2] = "not-a-number"
    lines[6] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    landed = home.zone.land(csv)
    before = home.services.warehouse.table_counts()

    event = _finalize_event(home.bucket, "broken.csv", landed.generation)
    assert run_task("check_new_data", event=event)
    with pytest.raises(AirflowFailException) as caught:
        run_task("load_raw")

    cause = caught.value.__cause__
    assert isinstance(cause, InvalidInputError)
    assert cause.location == "broken.csv:7:3"  # the same error the local home gives
    assert home.services.warehouse.table_counts() == before
    assert home.services.lineage.ingest_by_object("broken.csv", landed.generation) is None
