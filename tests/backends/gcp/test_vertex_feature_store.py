"""The Vertex AI Feature Online Store backend at its client boundary (no emulator exists):
the exact requests for the source-table write, the view sync and its wait, and the
online fetch, and how each answer maps to the project's records and errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1

from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.vertex_feature_store import VertexFeatureOnlineStore
from app.core.config import VertexOnlineStoreConfig
from app.core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from app.core.schema import FEATURE_VIEW_SCHEMA, MODEL_FEATURES
from tests.support.recording import Call, RecordingClient

SECTION = VertexOnlineStoreConfig(
    project="fraud-mlops-dev",
    location="europe-west1",
    online_store_id="fmo_dev_online",
    feature_view_id="card_features",
    source_table_uri="bq://fraud-mlops-dev.features.card_features",
    sync_timeout_seconds=60,
    sync_poll_seconds=5,
)
VIEW = (
    "projects/fraud-mlops-dev/locations/europe-west1/featureOnlineStores/fmo_dev_online/"
    "featureViews/card_features"
)
SYNC = f"{VIEW}/featureViewSyncs/123"
ADMIN = CallPolicy(timeout=30.0, deadline=60.0, initial=0.01, maximum=0.02)
SERVING = CallPolicy(timeout=0.5, deadline=0.2, initial=0.01, maximum=0.02)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _features(cards: int = 3) -> pd.DataFrame:
    rows = []
    for i in range(cards):
        row: dict[str, Any] = {
            "card_id": f"id{i}",
            "card_masked": f"400000******000{i}",
            "event_time": 100.0 + i,
        }
        row.update({name: float(i) for name in MODEL_FEATURES})
        rows.append(row)
    return pd.DataFrame(rows)


def _sync_state(*, done: bool, code: int = 0, message: str = "") -> aiplatform_v1.FeatureViewSync:
    run_time = {"end_time": {"seconds": 1_800_000_000}} if done else {}
    return aiplatform_v1.FeatureViewSync(
        name=SYNC, run_time=run_time, final_status={"code": code, "message": message}
    )


class FakeBigQuery:
    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.loads: list[tuple[str, Any, pd.DataFrame, dict[str, Any]]] = []
        self.queries: list[tuple[str, dict[str, Any]]] = []
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.rows = rows or []

    def _job(self, value: Any) -> Any:
        def result(**kwargs: Any) -> Any:
            self.results.append(("result", kwargs))
            return value

        return SimpleNamespace(result=result)

    def load_table_from_file(self, buffer: io.BytesIO, table: str, **kwargs: Any) -> Any:
        self.loads.append((table, kwargs["job_config"], pd.read_parquet(buffer), kwargs))
        return self._job(None)

    def query(self, sql: str, **kwargs: Any) -> Any:
        self.queries.append((sql, kwargs))
        return self._job(self.rows)


def _store(
    admin: RecordingClient | None = None,
    serving: RecordingClient | None = None,
    bigquery: FakeBigQuery | None = None,
    clock: Clock | None = None,
) -> VertexFeatureOnlineStore:
    clock = clock or Clock()
    return VertexFeatureOnlineStore(
        SECTION,
        admin_policy=ADMIN,
        serving_policy=SERVING,
        admin=admin or RecordingClient(),
        serving=serving or RecordingClient(),
        bigquery=bigquery or FakeBigQuery(),
        sleep=clock.sleep,
        clock=clock,
    )


def test_sync_replaces_source_table_then_syncs_the_view_and_waits() -> None:
    admin = RecordingClient(
        {
            "sync_feature_view": SimpleNamespace(feature_view_sync=SYNC),
            "get_feature_view_sync": [_sync_state(done=False), _sync_state(done=True)],
        }
    )
    bigquery = FakeBigQuery()
    clock = Clock()

    info = _store(admin, bigquery=bigquery, clock=clock).sync(_features(), snapshot_id="snap_1")

    ((table, job_config, written, load_kwargs),) = bigquery.loads
    assert table == "fraud-mlops-dev.features.card_features"
    assert job_config.write_disposition == "WRITE_TRUNCATE"
    assert [f.name for f in job_config.schema] == [c.name for c in FEATURE_VIEW_SCHEMA]
    assert list(written.columns) == [c.name for c in FEATURE_VIEW_SCHEMA]
    assert set(written["snapshot_id"]) == {"snap_1"}
    assert list(written["card_id"]) == ["id0", "id1", "id2"]
    assert load_kwargs["timeout"] == 30.0
    assert bigquery.results[0][1]["timeout"] == 60.0 and bigquery.results[0][1]["retry"]
    assert admin.methods() == [
        "sync_feature_view",
        "get_feature_view_sync",
        "get_feature_view_sync",
    ]
    assert admin.calls[0].request == {"feature_view": VIEW}
    assert admin.calls[1].request == {"name": SYNC}
    assert all(c.kwargs["timeout"] == 30.0 and c.kwargs["retry"] for c in admin.calls)
    assert clock.slept == [5]
    assert (info.snapshot_id, info.cards) == ("snap_1", 3)


def test_sync_view_sync_failed_names_the_sync_and_its_status() -> None:
    admin = RecordingClient(
        {
            "sync_feature_view": SimpleNamespace(feature_view_sync=SYNC),
            "get_feature_view_sync": _sync_state(done=True, code=9, message="source table empty"),
        }
    )

    with pytest.raises(BackendUnavailableError, match=r"123 failed \(code 9\): source table empty"):
        _store(admin).sync(_features(), snapshot_id="snap_1")


def test_sync_view_sync_never_finishing_times_out() -> None:
    admin = RecordingClient(
        {
            "sync_feature_view": SimpleNamespace(feature_view_sync=SYNC),
            "get_feature_view_sync": _sync_state(done=False),
        }
    )
    clock = Clock()

    with pytest.raises(BackendUnavailableError, match="did not finish within 60 s"):
        _store(admin, clock=clock).sync(_features(), snapshot_id="snap_1")
    assert sum(clock.slept) == 60


def test_sync_bad_rows_are_refused_before_anything_is_written() -> None:
    admin = RecordingClient()
    bigquery = FakeBigQuery()
    twice = pd.concat([_features(1), _features(1)])

    with pytest.raises(InvalidInputError, match="a card twice"):
        _store(admin, bigquery=bigquery).sync(twice, snapshot_id="snap_1")
    with pytest.raises(InvalidInputError, match="lack columns"):
        _store(admin, bigquery=bigquery).sync(_features().drop(columns="amount"), snapshot_id="s")
    assert bigquery.loads == [] and admin.calls == []


def _fetch_response(values: dict[str, object]) -> aiplatform_v1.FetchFeatureValuesResponse:
    pairs = aiplatform_v1.FetchFeatureValuesResponse.FeatureNameValuePairList
    features = []
    for name, value in values.items():
        if isinstance(value, str):
            fv = aiplatform_v1.FeatureValue(string_value=value)
        elif value is None:
            fv = aiplatform_v1.FeatureValue()
        else:
            fv = aiplatform_v1.FeatureValue(double_value=float(value))  # type: ignore[arg-type]
        features.append(pairs.FeatureNameValuePair(name=name, value=fv))
    return aiplatform_v1.FetchFeatureValuesResponse(key_values=pairs(features=features))


def test_fetch_asks_the_view_for_the_card_id_and_maps_the_record() -> None:
    values: dict[str, object] = {name: 1.5 for name in MODEL_FEATURES}
    values.update(
        card_masked="400000******0002",
        event_time=42.0,
        snapshot_id="snap_1",
        feature_timestamp="2026-12-01T00:00:00Z",
    )
    values[MODEL_FEATURES[0]] = None  # a feature the view holds no value for
    serving = RecordingClient({"fetch_feature_values": _fetch_response(values)})

    record = _store(serving=serving).fetch("hmac-of-card")

    (call,) = serving.calls
    request: aiplatform_v1.FetchFeatureValuesRequest = call.request
    assert request.feature_view == VIEW
    assert request.data_key.key == "hmac-of-card"
    assert request.data_format == aiplatform_v1.FeatureViewDataFormat.KEY_VALUE
    assert call.kwargs["timeout"] == 0.5 and call.kwargs["retry"]
    assert (record.card_id, record.card_masked, record.event_time) == (
        "hmac-of-card",
        "400000******0002",
        42.0,
    )
    assert record.snapshot_id == "snap_1"
    assert record.features[MODEL_FEATURES[0]] is None
    assert record.features[MODEL_FEATURES[1]] == 1.5


def test_fetch_unknown_card_is_not_found() -> None:
    serving = RecordingClient({"fetch_feature_values": gexc.NotFound("key not found")})

    with pytest.raises(NotFoundError):
        _store(serving=serving).fetch("nobody")


def test_fetch_store_down_retries_within_the_serving_deadline_then_is_unavailable() -> None:
    serving = RecordingClient({"fetch_feature_values": gexc.ServiceUnavailable("bigtable")})

    with pytest.raises(BackendUnavailableError):
        _store(serving=serving).fetch("id0")
    assert len(serving.calls) >= 2


def test_last_sync_is_the_tables_snapshot_once_a_later_view_sync_succeeded() -> None:
    written = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    later = _sync_state(done=True)
    later.create_time = written + timedelta(minutes=1)
    bigquery = FakeBigQuery([{"snapshot_id": "snap_2", "cards": 7, "written_at": written}])
    admin = RecordingClient({"list_feature_view_syncs": [[later]]})

    info = _store(admin, bigquery=bigquery).last_sync()

    assert info is not None and (info.snapshot_id, info.cards) == ("snap_2", 7)
    ((sql, kwargs),) = bigquery.queries
    assert "FROM `fraud-mlops-dev.features.card_features` GROUP BY snapshot_id" in sql
    assert kwargs["timeout"] == 30.0
    call: Call = admin.calls[0]
    assert call.request == {"parent": VIEW, "order_by": "create_time desc", "page_size": 10}


def test_last_sync_table_written_after_the_last_view_sync_is_not_online_yet() -> None:
    written = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    earlier = _sync_state(done=True)
    earlier.create_time = written - timedelta(minutes=1)
    bigquery = FakeBigQuery([{"snapshot_id": "snap_2", "cards": 7, "written_at": written}])
    admin = RecordingClient({"list_feature_view_syncs": [[earlier]]})

    assert _store(admin, bigquery=bigquery).last_sync() is None


def test_last_sync_empty_table_is_none() -> None:
    assert _store(bigquery=FakeBigQuery([])).last_sync() is None


def test_last_sync_source_table_not_made_yet_is_none() -> None:
    class Missing(FakeBigQuery):
        def query(self, sql: str, **kwargs: Any) -> Any:
            raise gexc.NotFound("no such table")

    assert _store(bigquery=Missing()).last_sync() is None


def test_warm_makes_the_serving_client_without_a_request() -> None:
    serving = RecordingClient()
    store = _store(serving=serving)

    store.warm()

    assert store._serving_client() is serving
    assert serving.calls == []
