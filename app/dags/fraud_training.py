"""Continuous training: landed CSV -> raw -> training -> snapshot -> feature view -> pipeline.

One run per landed object. Locally the landing trigger starts it with the object in
the run conf. On Composer, Airflow itself watches the landing subscription (an
``Asset`` with an ``AssetWatcher`` over the Google provider's ``google+pubsub``
``MessageQueueTrigger``, one message per event), and the run reads the bucket's
OBJECT_FINALIZE notification from its triggering asset event. This file only wires
tasks: the logic is in :mod:`app.core.flow`, the roles come from
:class:`app.backends.Backends`, and the runtime config is read when a task runs,
never at import. The one thing read at parse time is the subscription to watch
(:data:`LANDING_SUBSCRIPTION_ENV`, set by the stack on Composer), because a schedule
is part of the DAG's definition; without it the DAG is triggered by run conf only.

Every task is idempotent (the same conf twice changes nothing), so Airflow may retry
any of them: a retry after a transient failure (a locked file, a store that did not
answer) finishes the work instead of failing the run. A run started by a landing event
that still fails is dead-lettered with its reason (:func:`dead_letter_failed_run`), so
``fraud-mlops status`` lists it and ``fraud-mlops retry`` delivers it again.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import pendulum
from airflow.sdk import dag, get_current_context, task

DAG_ID = "fraud_training"
LANDING_SUBSCRIPTION_ENV = "FRAUD_MLOPS_LANDING_SUBSCRIPTION"
LANDING_ASSET = "fraud-mlops-landing"
# The XCom a failing task leaves its error in, for the run's failure callback.
FAILURE_XCOM = "fraud_mlops_failure"

DEFAULT_ARGS: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    # Every task has a limit; the pipeline's own is longer (it trains).
    "execution_timeout": timedelta(minutes=20),
}
# Timeouts per task, sized for the Kaggle file (284,807 rows) with room to spare.
TIMEOUTS: dict[str, timedelta] = {
    "check_new_data": timedelta(minutes=2),
    "load_raw": timedelta(minutes=20),
    "transform": timedelta(minutes=20),
    "snapshot": timedelta(minutes=10),
    "sync_feature_view": timedelta(minutes=30),
    "run_training_pipeline": timedelta(hours=3),
}


T = TypeVar("T")


def _call(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a flow step; an error that a retry cannot heal fails the task at once.

    A bad file or a bad config fails the same way every time, so it skips the
    retries; a store that did not answer (``retryable``) is retried by Airflow.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from app.core.errors import FraudMlopsError

    try:
        return step(*args, **kwargs)
    except FraudMlopsError as exc:
        _record_failure(exc)
        if exc.retryable:
            raise
        raise AirflowFailException(str(exc)) from exc
    except Exception as exc:
        _record_failure(exc)
        raise


def _record_failure(exc: Exception) -> None:
    """Leave the task's error where the run's failure callback reads it (the callback's
    context has no exception). Best effort: it never hides the error itself."""
    from app.core.cards import redact_pans
    from app.core.errors import FraudMlopsError

    data = (
        exc.to_dict()
        if isinstance(exc, FraudMlopsError)
        # A library's message may quote the data: no card number rides on a dead letter.
        else {"error_class": type(exc).__name__, "message": redact_pans(str(exc)), "location": None}
    )
    try:
        ti = get_current_context()["ti"]
        ti.xcom_push(key=FAILURE_XCOM, value={"task": ti.task_id, **data})
    except Exception:  # noqa: BLE001 - outside a task, or XCom unreachable: nothing to keep
        return


def landing_schedule(env: Mapping[str, str] | None = None) -> list[Any] | None:
    """The landing subscription as a watched asset: one DAG run per landed object.

    ``projects/<project>/subscriptions/<id>`` from the environment, or None (run conf only).
    """
    subscription = (os.environ if env is None else env).get(LANDING_SUBSCRIPTION_ENV)
    if not subscription:
        return None
    parts = subscription.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "subscriptions":
        raise ValueError(f"{LANDING_SUBSCRIPTION_ENV}={subscription!r} is not a subscription path")
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    from airflow.sdk import Asset, AssetWatcher

    trigger = MessageQueueTrigger(
        scheme="google+pubsub",
        project_id=parts[1],
        subscription=parts[3],
        # One message, one asset event, one run. Acked when pulled: the trigger cannot
        # hold a message for a run's length, and ack_messages=False would have Pub/Sub
        # redeliver every message, a successful run's too, until its dead-letter policy
        # took it. So the subscription's policy never sees a failed run: Airflow retries
        # the tasks (they are idempotent), and a run that still fails is dead-lettered
        # with its reason by the DAG's on_failure_callback (dead_letter_failed_run).
        max_messages=1,
        ack_messages=True,
        poke_interval=30.0,
        # Composer's default connection: the environment's own service account.
        gcp_conn_id="google_cloud_default",
    )
    return [Asset(LANDING_ASSET, watchers=[AssetWatcher(name="landing-watcher", trigger=trigger)])]


def conf_from_asset_events(events: Mapping[Any, Any]) -> dict[str, Any]:
    """The run conf for the object that the triggering Pub/Sub message names."""
    from app.backends.gcp.gcs_landing import landed_from_notification
    from app.core.errors import InvalidInputError
    from app.core.flow import RunConf

    for asset_events in events.values():
        for event in asset_events:
            payload = (getattr(event, "extra", None) or {}).get("payload") or {}
            for received in payload.get("message") or []:
                message = received.get("message") or {}
                data = base64.b64decode(message.get("data") or "")
                landed = landed_from_notification(message.get("attributes") or {}, data)
                return RunConf.for_object(landed).model_dump()
    raise InvalidInputError("the run has neither a conf nor a landing event", location="conf")


def dead_letter_failed_run(context: Mapping[str, Any]) -> None:
    """The DAG's ``on_failure_callback``: a run started by a landing event failed for
    good, so its event becomes a dead letter with the failed task's error.

    Only for runs from an asset event (no conf): a run with a conf was started by the
    local trigger, which settles its own claims, or by hand, with nothing to dead-letter.
    """
    import logging

    dag_run = context.get("dag_run")
    if dag_run is None:
        # Airflow can call back without the run (its failed task gone from the DAG): the
        # event was acked when pulled, so say loudly which run could not be dead-lettered.
        logging.getLogger(__name__).error(
            "DAG run %s failed, but its failure callback got no run: its landing event, if "
            "any, is not dead-lettered",
            context.get("run_id"),
        )
        return
    if dict(getattr(dag_run, "conf", None) or {}):
        return
    asset_events = context.get("triggering_asset_events") or {}
    if not asset_events:
        return

    from app.backends import Backends
    from app.core import flow
    from app.core.config import load_config
    from app.core.errors import InvalidInputError
    from app.core.records import RunFailure

    log = logging.getLogger(__name__)
    try:
        conf = flow.RunConf.parse(conf_from_asset_events(asset_events))
    except InvalidInputError as exc:
        # The message names no object: no run, and no retry, could use it.
        log.error("the failed run's landing event names no object, not dead-lettered: %s", exc)
        return
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    recorded = None
    if ti is not None:
        try:
            recorded = ti.xcom_pull(task_ids=task_id, key=FAILURE_XCOM)
        except Exception:  # noqa: BLE001 - the reason falls back to the run's own
            recorded = None
    event_id = flow.dead_letter_failed_run(
        Backends(load_config()),
        conf,
        run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "")),
        failed_task=task_id,
        failure=RunFailure.from_dict(recorded) if isinstance(recorded, Mapping) else None,
    )
    log.info("dead-lettered %s as %s", conf.uri, event_id)


def _inputs() -> tuple[Any, Any]:
    from app.backends import Backends
    from app.core.config import load_config
    from app.core.flow import RunConf

    context = get_current_context()
    conf = dict(context["dag_run"].conf or {})
    if not conf:
        conf = conf_from_asset_events(context.get("triggering_asset_events") or {})
    return Backends(load_config()), RunConf.parse(conf)


@dag(
    dag_id=DAG_ID,
    schedule=landing_schedule(),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=dead_letter_failed_run,
    tags=["fraud-mlops", "training"],
    doc_md=__doc__,
)
def fraud_training() -> None:
    @task.short_circuit(execution_timeout=TIMEOUTS["check_new_data"])
    def check_new_data() -> bool:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.should_process, services, conf)

    @task(execution_timeout=TIMEOUTS["load_raw"])
    def load_raw() -> dict[str, Any]:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.load_raw, services, conf)

    @task(execution_timeout=TIMEOUTS["transform"])
    def transform() -> int:
        from app.core import flow

        services, _ = _call(_inputs)
        return _call(flow.transform, services)

    @task(execution_timeout=TIMEOUTS["snapshot"])
    def snapshot(loaded: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.snapshot, services, conf, loaded)

    @task(execution_timeout=TIMEOUTS["sync_feature_view"])
    def sync_feature_view(snap: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        services, _ = _call(_inputs)
        return _call(flow.sync_feature_view, services, snap["snapshot_id"])

    @task(execution_timeout=TIMEOUTS["run_training_pipeline"])
    def run_training_pipeline(snap: dict[str, Any]) -> dict[str, Any]:
        from app.core import flow

        services, conf = _call(_inputs)
        return _call(flow.train, services, snap["snapshot_id"], force=conf.force)

    loaded = load_raw()
    snap = snapshot(loaded)  # type: ignore[arg-type]
    check_new_data() >> loaded >> transform() >> snap
    # TaskFlow hands an XComArg here and the task receives its value at run time.
    sync_feature_view(snap) >> run_training_pipeline(snap)  # type: ignore[arg-type]


fraud_training_dag = fraud_training()
