"""The online store on Vertex AI Feature Store: a Bigtable online store with one feature view.

A sync replaces the feature view's BigQuery source table in one load job (readers of
the table see the old rows or the new, never half), then asks the view to sync and
waits for it. A fetch reads one card's features from the online store by its HMAC id.
The table names the snapshot its rows come from, so ``last_sync`` can tell which
snapshot is online: the table's, once a view sync that started after the table was
written has finished well.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

import pandas as pd

from app.backends.gcp.calls import CallPolicy, seam, vertex_client_options
from app.core.config import VertexOnlineStoreConfig
from app.core.errors import BackendUnavailableError, ConfigError, InvalidInputError, NotFoundError
from app.core.ports import Services
from app.core.records import FeatureRecord, SyncInfo
from app.core.schema import FEATURE_VIEW_SCHEMA, MODEL_FEATURES


class VertexFeatureOnlineStore:
    def __init__(
        self,
        section: VertexOnlineStoreConfig,
        *,
        admin_policy: CallPolicy,
        serving_policy: CallPolicy,
        admin: Any = None,
        serving: Any = None,
        bigquery: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.section = section
        self.admin_policy = admin_policy
        self.serving_policy = serving_policy
        self._admin = admin
        self._serving = serving
        self._bigquery = bigquery
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self.feature_view = (
            f"projects/{section.project}/locations/{section.location}/featureOnlineStores/"
            f"{section.online_store_id}/featureViews/{section.feature_view_id}"
        )

    @classmethod
    def from_config(cls, section: VertexOnlineStoreConfig, backends: Services) -> Self:
        cfg = backends.config
        return cls(
            section,
            admin_policy=CallPolicy.from_config(cfg.gcp_calls),
            serving_policy=CallPolicy.from_config(cfg.serving_calls),
        )

    # -- clients, made once per instance -------------------------------------------

    def _client_options(self) -> dict[str, str]:
        # Vertex AI is regional: both services answer on the region's own endpoint.
        return vertex_client_options(self.section.location)

    def _admin_client(self) -> Any:
        with self._lock:
            if self._admin is None:
                from google.cloud import aiplatform_v1

                self._admin = aiplatform_v1.FeatureOnlineStoreAdminServiceClient(
                    client_options=self._client_options()
                )
            return self._admin

    def _serving_client(self) -> Any:
        with self._lock:
            if self._serving is None:
                from google.cloud import aiplatform_v1

                self._serving = aiplatform_v1.FeatureOnlineStoreServiceClient(
                    client_options=self._client_options()
                )
            return self._serving

    def _bigquery_client(self) -> Any:
        with self._lock:
            if self._bigquery is None:
                from google.cloud import bigquery

                self._bigquery = bigquery.Client(
                    project=self.section.project, credentials=self._sync_credentials()
                )
            return self._bigquery

    def _sync_credentials(self) -> Any:
        """The sync account's credentials: only it may write the source table."""
        if not self.section.sync_service_account:
            return None
        import google.auth
        from google.auth import impersonated_credentials

        source, _ = google.auth.default()
        return impersonated_credentials.Credentials(
            source_credentials=source,
            target_principal=self.section.sync_service_account,
            target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            lifetime=3600,
        )

    def _source_table(self) -> str:
        uri = self.section.source_table_uri
        if not uri:
            raise ConfigError("online_store.source_table_uri is not set: nothing to sync from")
        return uri.removeprefix("bq://")

    # -- sync -------------------------------------------------------------------------

    def sync(self, features: pd.DataFrame, *, snapshot_id: str) -> SyncInfo:
        rows = _source_rows(features, snapshot_id)
        table = self._source_table()
        synced_at = rows["feature_timestamp"].iloc[0].isoformat(timespec="seconds")
        self._write_source(rows, table)
        sync_name = self._start_view_sync()
        self._wait_for(sync_name)
        return SyncInfo(snapshot_id=snapshot_id, cards=len(rows), synced_at=synced_at)

    def _write_source(self, rows: pd.DataFrame, table: str) -> None:
        from google.cloud import bigquery

        job_config = bigquery.LoadJobConfig(
            schema=[
                bigquery.SchemaField(c.name, c.bq_type, mode=c.mode) for c in FEATURE_VIEW_SCHEMA
            ],
            source_format=bigquery.SourceFormat.PARQUET,
            # One job replaces the whole table: the view never syncs half a snapshot.
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        buffer = io.BytesIO()
        rows.to_parquet(buffer, index=False)
        buffer.seek(0)
        client = self._bigquery_client()
        policy = self.admin_policy
        with seam(f"writing the feature view's source table {table}"):
            job = client.load_table_from_file(
                buffer, table, job_config=job_config, timeout=policy.timeout
            )
            job.result(timeout=policy.deadline, retry=policy.retry())

    def _start_view_sync(self) -> str:
        policy = self.admin_policy
        with seam(f"starting a sync of {self.feature_view}"):
            response = self._admin_client().sync_feature_view(
                request={"feature_view": self.feature_view},
                timeout=policy.timeout,
                retry=policy.retry(),
            )
        return str(response.feature_view_sync)

    def _wait_for(self, sync_name: str) -> None:
        deadline = self._clock() + self.section.sync_timeout_seconds
        policy = self.admin_policy
        while True:
            with seam(f"reading feature view sync {sync_name}"):
                state = self._admin_client().get_feature_view_sync(
                    request={"name": sync_name}, timeout=policy.timeout, retry=policy.retry()
                )
            if _finished(state):
                code = int(getattr(state.final_status, "code", 0) or 0)
                if code != 0:
                    raise BackendUnavailableError(
                        f"feature view sync {sync_name} failed (code {code}): "
                        f"{state.final_status.message}"
                    )
                return
            if self._clock() >= deadline:
                raise BackendUnavailableError(
                    f"feature view sync {sync_name} did not finish within "
                    f"{self.section.sync_timeout_seconds:.0f} s"
                )
            self._sleep(self.section.sync_poll_seconds)

    def last_sync(self) -> SyncInfo | None:
        table = self._source_table()
        policy = self.admin_policy
        query = (
            "SELECT snapshot_id, COUNT(*) AS cards, MAX(feature_timestamp) AS written_at "
            f"FROM `{table}` GROUP BY snapshot_id"
        )
        try:
            with seam(f"reading {table}"):
                job = self._bigquery_client().query(query, timeout=policy.timeout)
                found = list(job.result(timeout=policy.deadline, retry=policy.retry()))
        except NotFoundError:
            return None  # the stack makes the table; until it exists nothing was synced
        if len(found) != 1:
            return None  # never written (or not by a sync)
        row = found[0]
        written_at: datetime = row["written_at"]
        if not self._view_synced_since(written_at):
            return None  # the table holds it, the online store may not yet
        return SyncInfo(
            snapshot_id=str(row["snapshot_id"]),
            cards=int(row["cards"]),
            synced_at=written_at.astimezone(UTC).isoformat(timespec="seconds"),
        )

    def _view_synced_since(self, written_at: datetime) -> bool:
        policy = self.admin_policy
        with seam(f"listing syncs of {self.feature_view}"):
            syncs = self._admin_client().list_feature_view_syncs(
                request={
                    "parent": self.feature_view,
                    "order_by": "create_time desc",
                    "page_size": 10,
                },
                timeout=policy.timeout,
                retry=policy.retry(),
            )
            for state in syncs:
                started = _as_datetime(state.create_time)
                if started is not None and started < written_at:
                    return False
                if _finished(state) and int(getattr(state.final_status, "code", 0) or 0) == 0:
                    return True
        return False

    # -- fetch --------------------------------------------------------------------------

    def warm(self) -> None:
        """Make the serving client (its channel, its credentials) now: the first fetch
        would, at several times a fetch's cost."""
        self._serving_client()

    def fetch(self, card_id: str) -> FeatureRecord:
        from google.cloud import aiplatform_v1

        policy = self.serving_policy
        request = aiplatform_v1.FetchFeatureValuesRequest(
            feature_view=self.feature_view,
            data_key=aiplatform_v1.FeatureViewDataKey(key=card_id),
            data_format=aiplatform_v1.FeatureViewDataFormat.KEY_VALUE,
        )
        with seam("fetching a card's online features"):
            response = self._serving_client().fetch_feature_values(
                request=request, timeout=policy.timeout, retry=policy.retry()
            )
        values = {pair.name: _value(pair.value) for pair in response.key_values.features}
        if not values:
            raise NotFoundError("card is not in the feature view")
        return FeatureRecord(
            card_id=card_id,
            card_masked=str(values.get("card_masked") or ""),
            event_time=_number(values.get("event_time")) or 0.0,
            features={name: _number(values.get(name)) for name in MODEL_FEATURES},
            feature_timestamp=str(values.get("feature_timestamp") or ""),
            snapshot_id=str(values.get("snapshot_id") or ""),
        )


def _source_rows(features: pd.DataFrame, snapshot_id: str) -> pd.DataFrame:
    """The feature view's source rows, in FEATURE_VIEW_SCHEMA's columns and order."""
    needed = ("card_id", "card_masked", "event_time", *MODEL_FEATURES)
    missing = [c for c in needed if c not in features]
    if missing:
        raise InvalidInputError(f"feature rows lack columns {missing}", location=snapshot_id)
    if features.empty:
        raise InvalidInputError("no feature rows to sync", location=snapshot_id)
    if features["card_id"].duplicated().any():
        raise InvalidInputError("feature rows hold a card twice", location=snapshot_id)
    rows = features[list(needed)].copy()
    rows["snapshot_id"] = snapshot_id
    rows["feature_timestamp"] = pd.Timestamp(datetime.now(UTC).replace(microsecond=0))
    for column in FEATURE_VIEW_SCHEMA:
        if column.bq_type == "FLOAT64":
            rows[column.name] = rows[column.name].astype("float64")
        elif column.bq_type == "INT64":
            rows[column.name] = rows[column.name].astype("Int64")
    return rows[[c.name for c in FEATURE_VIEW_SCHEMA]]


def _finished(state: Any) -> bool:
    run_time = getattr(state, "run_time", None)
    end = getattr(run_time, "end_time", None)
    return _as_datetime(end) is not None


def _as_datetime(value: Any) -> datetime | None:
    """A set timestamp as an aware datetime, else None.

    proto-plus fields come back as datetimes (None when unset); ``run_time`` is a plain
    ``google.type.Interval``, whose ends are protobuf Timestamps (all zero when unset).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "ToDatetime"):
        if not (value.seconds or value.nanos):
            return None
        converted: datetime = value.ToDatetime(tzinfo=UTC)
        return converted
    return None


def _value(value: Any) -> object:
    """The one set field of a FeatureValue."""
    kind = value._pb.WhichOneof("value") if hasattr(value, "_pb") else None
    return None if kind is None else getattr(value, kind)


def _number(value: object) -> float | None:
    if value is None:
        return None
    number = float(value) if isinstance(value, int | float | str) else math.nan
    return None if math.isnan(number) else number
