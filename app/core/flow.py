"""What each DAG task does, as plain functions of the roles and the run conf.

The DAG file only wires these together; the roles come from the composition root
(:class:`app.backends.Backends`), so nothing here knows which home it runs in. Every
step is idempotent: re-running a task, or a whole DAG run for the same landed object,
changes nothing, and a file landed twice trains once unless the run conf says ``force``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core.errors import InvalidInputError, NotFoundError
from app.core.ingest.load import load_landed
from app.core.ports import Services
from app.core.records import LandedObject, PipelineResult, RunFailure


class RunConf(BaseModel):
    """The DAG run's conf: the landed object, as the object-finalize event names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    object_name: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    # Known when the announcer computed it (locally); a GCS notification carries none.
    content_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    generation: int = Field(default=0, ge=0)
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

    @classmethod
    def for_object(cls, landed: LandedObject, *, force: bool = False) -> RunConf:
        return cls(
            object_name=landed.name,
            uri=landed.uri,
            content_hash=landed.content_hash,
            generation=landed.generation,
            force=force,
        )

    @property
    def landed(self) -> LandedObject:
        return LandedObject(
            name=self.object_name,
            uri=self.uri,
            content_hash=self.content_hash,
            generation=self.generation,
        )


def should_process(services: Services, conf: RunConf) -> bool:
    """False when this object was already loaded, snapshotted and trained on.

    Known content is looked up by its hash; an object announced without one (a GCS
    notification) by its name and generation, so a redelivered message for the same
    generation runs nothing twice without even reading the object again.
    """
    if conf.force:
        return True
    lineage = services.lineage
    if conf.content_hash is not None:
        ingest = lineage.ingest_by_hash(conf.content_hash)
    elif conf.generation:
        ingest = lineage.ingest_by_object(conf.object_name, conf.generation)
    else:
        return True
    if ingest is None:
        return True
    snapshot = lineage.snapshot_for_ingest(ingest.ingest_id)
    return snapshot is None or not lineage.training_runs(snapshot.snapshot_id)


def load_raw(services: Services, conf: RunConf) -> dict[str, Any]:
    result = load_landed(
        conf.landed,
        landing=services.landing,
        warehouse=services.warehouse,
        lineage=services.lineage,
        card_key=services.card_key,
        cards_cfg=services.config.cards,
    )
    return asdict(result)


def transform(services: Services) -> int:
    return services.warehouse.build_training_table()


def snapshot(
    services: Services, conf: RunConf, loaded: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Freeze the training table for this object's ingest (``loaded``: load_raw's result)."""
    content_hash = (loaded or {}).get("content_hash") or conf.content_hash
    # The same content may have been loaded earlier under another name: that ingest
    # owns the rows, so it owns the snapshot too.
    ingest = services.lineage.ingest_by_hash(content_hash) if content_hash else None
    if ingest is None:
        raise NotFoundError(f"{conf.object_name} has not been loaded; load_raw must run first")
    info = services.warehouse.snapshot_training(
        ingest_id=ingest.ingest_id, source_object=ingest.source_object
    )
    return asdict(info)


def sync_feature_view(services: Services, snapshot_id: str) -> dict[str, Any]:
    """Serve the newest snapshot's features, whichever run asks.

    A re-run for an older file (``--force``) must not put stale features back online,
    so the target is always the latest snapshot, not necessarily ``snapshot_id``.
    """
    store = services.online_store
    latest = services.lineage.latest_snapshot()
    if latest is None:
        raise NotFoundError("no snapshot exists yet; snapshot must run first")
    last = store.last_sync()
    if last is not None and last.snapshot_id == latest.snapshot_id:
        return {**asdict(last), "skipped": True, "requested": snapshot_id}
    features = services.warehouse.latest_card_features(latest.snapshot_id)
    info = store.sync(features, snapshot_id=latest.snapshot_id)
    return {**asdict(info), "skipped": False, "requested": snapshot_id}


def train(services: Services, snapshot_id: str, *, force: bool = False) -> dict[str, Any]:
    lineage = services.lineage
    previous = lineage.training_runs(snapshot_id)
    if previous and not force:
        return {**asdict(previous[-1]), "skipped": True}
    if not previous and not force and (resumed := _resume(services, snapshot_id)) is not None:
        lineage.record_training_run(resumed)
        return {**asdict(resumed), "skipped": False}
    run_name = f"train-{snapshot_id}".replace("_", "-")
    if previous:
        run_name += f"-r{len(previous) + 1}"
    result: PipelineResult = services.pipeline_runner.run(
        snapshot_id=snapshot_id, run_name=run_name
    )
    lineage.record_training_run(result)
    return {**asdict(result), "skipped": False}


def dead_letter_failed_run(
    services: Services,
    conf: RunConf,
    *,
    run_id: str,
    failed_task: str | None = None,
    failure: RunFailure | None = None,
) -> str:
    """Dead-letter the landing event of a run that failed for good, after its tasks'
    retries: ``failure`` as the failed task recorded it, or, without one, the run's own
    failure naming that task. Returns the dead letter's event id (``retry`` takes it).

    For a run whose event no claim holds any more (Composer's trigger acked it when it
    pulled it); a consumer that holds its claim settles it itself.
    """
    reason = failure or RunFailure(
        task=failed_task or "run",
        error_class="DagRunFailed",
        message=f"DAG run {run_id} failed"
        + (f" in task {failed_task}" if failed_task else "")
        + " after its retries; the task's log has the error",
    )
    return services.landing_events.dead_letter_landed(conf.landed, reason=reason)


def _resume(services: Services, snapshot_id: str) -> PipelineResult | None:
    """Finish an attempt that registered a model for this snapshot but died before its
    run was recorded, instead of training and registering a second copy.

    Only a candidate that passed the gate is ever registered, so deploying it completes
    what the attempt decided (at the canary share, when one is configured), unless it
    already serves or a newer version went live in the meantime. The deploy is a
    compare-and-swap against the champion read here: a change in between is a
    ConflictError, which the task's retry reads afresh.
    """
    registry = services.registry
    registered = registry.versions_for_snapshot(snapshot_id)
    if not registered:
        return None
    version = registered[-1]
    endpoint = services.endpoint
    live = endpoint.deployed()
    serving = endpoint.traffic()
    newer = next(
        (
            name
            for name in serving
            if name != version.version and registry.is_newer(registry.get(name), version)
        ),
        None,
    )
    if newer is None and version.version not in serving:
        serving = endpoint.deploy(version, expected_champion=live.version if live else None)
    by = f"run {version.run_name}" if version.run_name else "an attempt"
    reason = f"Resumed: {version.version} was registered for this snapshot by {by} that " + (
        f"did not finish; {newer} is newer and stays live."
        if newer is not None
        else f"did not finish; it is deployed ({serving.get(version.version, 0)}% of traffic)."
    )
    return PipelineResult(
        run_name=f"train-{snapshot_id}-resumed".replace("_", "-"),
        snapshot_id=snapshot_id,
        deployed=newer is None,
        gate_reason=reason,
        metrics=dict(version.metrics),
        model_version=None if newer is not None else version.version,
    )
