"""What each DAG task does, as plain functions of (config, run conf).

The DAG file only wires these together. Every step is idempotent: re-running a
DAG run for the same landed object changes nothing, and a file landed twice
trains once unless the run conf says ``force``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core import backends
from app.core.config import RuntimeConfig
from app.core.errors import InvalidInputError, NotFoundError
from app.core.ingest.load import load_landed
from app.core.ports import LandedObject, PipelineResult


class RunConf(BaseModel):
    """The DAG run's conf: the landed object, as the object-finalize event names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    object_name: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    force: bool = False

    @classmethod
    def parse(cls, conf: dict[str, Any]) -> RunConf:
        try:
            return cls.model_validate(conf)
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) or "conf" for e in exc.errors())
            raise InvalidInputError(
                f"invalid DAG run conf ({exc.error_count()} errors)", location=fields
            ) from exc

    @property
    def landed(self) -> LandedObject:
        return LandedObject(name=self.object_name, uri=self.uri, content_hash=self.content_hash)


def should_process(cfg: RuntimeConfig, conf: RunConf) -> bool:
    """False when this object was already loaded, snapshotted and trained on."""
    if conf.force:
        return True
    wh = backends.warehouse(cfg)
    ingest_id = wh.find_ingest(conf.content_hash)
    if ingest_id is None:
        return True
    snapshot = next((s for s in wh.list_snapshots() if s.source_ingest_id == ingest_id), None)
    return snapshot is None or not wh.training_runs(snapshot.snapshot_id)


def load_raw(cfg: RuntimeConfig, conf: RunConf) -> dict[str, Any]:
    result = load_landed(
        cfg, conf.landed, landing=backends.landing_zone(cfg), warehouse=backends.warehouse(cfg)
    )
    return asdict(result)


def transform(cfg: RuntimeConfig) -> int:
    return backends.warehouse(cfg).build_training_table()


def snapshot(cfg: RuntimeConfig, conf: RunConf) -> dict[str, Any]:
    wh = backends.warehouse(cfg)
    # The same content may have been loaded earlier under another name: that ingest
    # owns the rows, so it owns the snapshot too.
    ingest_id = wh.find_ingest(conf.content_hash)
    if ingest_id is None:
        raise NotFoundError(f"{conf.object_name} has not been loaded; load_raw must run first")
    source_object = ingest_id.rsplit("@", 1)[0]
    return asdict(wh.snapshot_training(ingest_id=ingest_id, source_object=source_object))


def sync_feature_view(cfg: RuntimeConfig, snapshot_id: str) -> dict[str, Any]:
    """Serve the newest snapshot's features, whichever run asks.

    A re-run for an older file (``--force``) must not put stale features back online,
    so the target is always the latest snapshot, not necessarily ``snapshot_id``.
    """
    store = backends.online_store(cfg)
    wh = backends.warehouse(cfg)
    latest = wh.list_snapshots()[-1].snapshot_id
    last = store.last_sync()
    if last is not None and last.snapshot_id == latest:
        return {**asdict(last), "skipped": True, "requested": snapshot_id}
    features = wh.latest_card_features(latest)
    info = store.sync(features, snapshot_id=latest)
    return {**asdict(info), "skipped": False, "requested": snapshot_id}


def train(cfg: RuntimeConfig, snapshot_id: str, *, force: bool = False) -> dict[str, Any]:
    wh = backends.warehouse(cfg)
    previous = wh.training_runs(snapshot_id)
    if previous and not force:
        return {**asdict(previous[-1]), "skipped": True}
    if not previous and not force and (resumed := _resume(cfg, snapshot_id)) is not None:
        wh.record_training_run(resumed)
        return {**asdict(resumed), "skipped": False}
    run_name = f"train-{snapshot_id}".replace("_", "-")
    if previous:
        run_name += f"-r{len(previous) + 1}"
    result: PipelineResult = backends.pipeline_runner(cfg).run(
        snapshot_id=snapshot_id, run_name=run_name
    )
    wh.record_training_run(result)
    return {**asdict(result), "skipped": False}


def _resume(cfg: RuntimeConfig, snapshot_id: str) -> PipelineResult | None:
    """Finish an attempt that registered a model for this snapshot but died before its
    run was recorded, instead of training and registering a second copy.

    Only a candidate that passed the gate is ever registered, so deploying it completes
    what the attempt decided, unless a newer version went live in the meantime.
    """
    registered = [v for v in backends.registry(cfg).list_versions() if v.snapshot_id == snapshot_id]
    if not registered:
        return None
    version = registered[-1]
    endpoint = backends.endpoint(cfg)
    live = endpoint.deployed()
    newer_live = live is not None and _seq(live.version) > _seq(version.version)
    if not newer_live and (live is None or live.version != version.version):
        endpoint.deploy(version)
    reason = f"Resumed: {version.version} was registered for this snapshot by an attempt that " + (
        f"did not finish; {live.version} is newer and stays live."
        if newer_live and live is not None
        else "did not finish; it is deployed."
    )
    return PipelineResult(
        run_name=f"train-{snapshot_id}-resumed".replace("_", "-"),
        snapshot_id=snapshot_id,
        deployed=not newer_live,
        gate_reason=reason,
        metrics=dict(version.metrics),
        model_version=None if newer_live else version.version,
    )


def _seq(version: str) -> int:
    return int(version.lstrip("v") or 0)
