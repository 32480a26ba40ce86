"""What is deployed, trained on which snapshot, with which metrics: one read of every store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from app.core.errors import BackendUnavailableError, ConfigError
from app.core.ports import LandingEvents, Services


def collect(services: Services, landing_events: LandingEvents | None = None) -> dict[str, Any]:
    """Read through the roles' own queries: no scanning lists for "latest".

    ``dead_letters`` lists the landing events no trigger will deliver again, each with
    the reason it was dead-lettered (None when this home's events are not readable here).
    """
    lineage = services.lineage
    latest = lineage.latest_snapshot()
    last_run = lineage.latest_training_run()
    deployed = services.endpoint.deployed()
    sync = services.online_store.last_sync()
    versions = services.registry.list_versions()
    return {
        "environment": services.config.environment,
        "tables": services.warehouse.table_counts(),
        "latest_snapshot": asdict(latest) if latest else None,
        "snapshots": len(lineage.snapshots()),
        "feature_view": asdict(sync) if sync else None,
        "registered_versions": [v.version for v in versions],
        # version -> percent, champion first: more than one entry while a canary is tried.
        "traffic": services.endpoint.traffic(),
        "deployed": (
            {
                "version": deployed.version,
                "snapshot_id": deployed.snapshot_id,
                "threshold": deployed.threshold,
                "metrics": dict(deployed.metrics),
                "created_at": deployed.created_at,
            }
            if deployed
            else None
        ),
        "last_training_run": asdict(last_run) if last_run else None,
        **_dead_letters(landing_events),
    }


def _dead_letters(landing_events: LandingEvents | None) -> dict[str, Any]:
    """The dead letters, or why they cannot be read with this account's rights.

    On GCP they are a Pub/Sub subscription that needs its own grant to pull: an account
    without it still gets the rest of ``status`` (``dead_letters_error`` says why not).
    """
    if landing_events is None:
        return {"dead_letters": None, "dead_letters_error": None}
    try:
        letters = [letter.as_dict() for letter in landing_events.dead_letters()]
    except (ConfigError, BackendUnavailableError) as exc:
        return {"dead_letters": None, "dead_letters_error": f"{type(exc).__name__}: {exc}"}
    return {"dead_letters": letters, "dead_letters_error": None}


def render(status: dict[str, Any]) -> str:
    lines = [f"environment: {status['environment']}"]
    tables = ", ".join(f"{k}={v:,}" for k, v in status["tables"].items())
    lines.append(f"tables: {tables}")
    snap = status["latest_snapshot"]
    lines.append(
        f"latest snapshot: {snap['snapshot_id']} ({snap['row_count']:,} rows, "
        f"{snap['fraud_count']} fraud) from {snap['source_object']}"
        if snap
        else "latest snapshot: none"
    )
    fv = status["feature_view"]
    lines.append(
        f"feature view: {fv['cards']:,} cards from {fv['snapshot_id']} at {fv['synced_at']}"
        if fv
        else "feature view: not synced"
    )
    dep = status["deployed"]
    if dep:
        shown = ("auprc", "roc_auc", "precision", "recall", "f1")
        metrics = ", ".join(f"{k}={dep['metrics'][k]:.4f}" for k in shown if k in dep["metrics"])
        lines.append(
            f"deployed: {dep['version']} (snapshot {dep['snapshot_id']}, "
            f"threshold {dep['threshold']:.4f}) {metrics}"
        )
    else:
        lines.append("deployed: nothing")
    lines.append(f"traffic: {render_traffic(status['traffic'])}")
    run = status["last_training_run"]
    if run:
        lines.append(
            f"last training run: {run['run_name']} -> "
            f"{'deployed ' + str(run['model_version']) if run['deployed'] else 'not deployed'}: "
            f"{run['gate_reason']}"
        )
    if status.get("dead_letters_error"):
        lines.append(f"dead letters: not readable here ({status['dead_letters_error']})")
    lines.extend(render_dead_letters(status.get("dead_letters")))
    return "\n".join(lines)


def render_dead_letters(letters: list[dict[str, Any]] | None) -> list[str]:
    """One line per dead letter: which file, how often delivered, and why it stopped."""
    if letters is None:
        return []
    if not letters:
        return ["dead letters: none"]
    lines = [f"dead letters: {len(letters)} (`fraud-mlops retry [EVENT_ID]` re-queues)"]
    for letter in letters:
        reason = letter["reason"]
        where = f" at {reason['location']}" if reason.get("location") else ""
        lines.append(
            f"  {letter['event_id']}: {letter['object_name']} after "
            f"{letter['delivery_attempts']} deliveries, {reason['task']}: "
            f"{reason['error_class']}{where}: {reason['message']}"
        )
    return lines


def render_traffic(traffic: Mapping[str, int]) -> str:
    """``v0001 75% (champion), v0002 25% (canary)``; the endpoint lists the champion first."""
    if not traffic:
        return "nothing deployed"
    if len(traffic) == 1:
        return f"{next(iter(traffic))} 100%"
    roles = ("champion", "canary")
    return ", ".join(
        f"{version} {percent}% ({role})"
        for (version, percent), role in zip(traffic.items(), roles, strict=True)
    )
