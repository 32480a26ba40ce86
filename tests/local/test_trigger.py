"""The local trigger acks, redelivers or dead-letters each landing event by its run's result.

The DAG run itself is replaced by a stand-in that returns a report (the e2e test runs
the real one); the landing zone and its event queue are the real folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends import Backends
from app.core.config import RuntimeConfig
from app.core.errors import InvalidInputError
from app.core.records import LandedObject, RunFailure
from app.local.trigger import DagRunReport, LocalAirflowTrigger


def _report(landed: LandedObject, state: str, failure: RunFailure | None = None) -> DagRunReport:
    return DagRunReport(landed.name, "manual__1", state, {"load_raw": state}, "x.log", failure)


@pytest.fixture
def trigger(cfg: RuntimeConfig) -> LocalAirflowTrigger:
    return LocalAirflowTrigger(cfg)


def _queue(cfg: RuntimeConfig, name: str) -> list[str]:
    folder = Path(Backends(cfg).landing.location) / ".events" / name
    return sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []


def test_dispatch_success_acks_the_event(
    trigger: LocalAirflowTrigger,
    cfg: RuntimeConfig,
    small_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landed = Backends(cfg).landing.land(small_csv)
    monkeypatch.setattr(trigger, "run", lambda obj, **_: _report(obj, "success"))

    (report,) = trigger.dispatch_pending()

    assert report.ok and report.object_name == landed.name
    assert (len(_queue(cfg, "done")), _queue(cfg, "pending"), _queue(cfg, "failed")) == (1, [], [])


def test_dispatch_bad_file_dead_letters_and_reraises_with_its_location(
    trigger: LocalAirflowTrigger,
    cfg: RuntimeConfig,
    small_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Backends(cfg).landing.land(small_csv)
    bad = RunFailure("load_raw", "InvalidInputError", "not a number", "small.csv:3:4")
    monkeypatch.setattr(trigger, "run", lambda obj, **_: _report(obj, "failed", bad))

    (report,) = trigger.dispatch_pending()

    assert not report.retryable
    assert (_queue(cfg, "pending"), len(_queue(cfg, "failed"))) == ([], 1)
    with pytest.raises(InvalidInputError) as caught:
        report.raise_for_error()
    assert caught.value.location == "small.csv:3:4"


def test_dispatch_transient_failure_hands_the_event_back_for_the_next_round(
    trigger: LocalAirflowTrigger,
    cfg: RuntimeConfig,
    small_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Backends(cfg).landing.land(small_csv, name="a.csv")
    Backends(cfg).landing.land(small_csv, name="b.csv")
    down = RunFailure("load_raw", "BackendUnavailableError", "warehouse locked")
    monkeypatch.setattr(trigger, "run", lambda obj, **_: _report(obj, "failed", down))

    (report,) = trigger.dispatch_pending()  # the round ends at the transient failure

    assert report.retryable and report.object_name == "a.csv"
    assert len(_queue(cfg, "pending")) == 2 and _queue(cfg, "failed") == []
    monkeypatch.setattr(trigger, "run", lambda obj, **_: _report(obj, "success"))
    assert [r.object_name for r in trigger.dispatch_pending()] == ["a.csv", "b.csv"]
    assert len(_queue(cfg, "done")) == 2


def test_dispatch_crash_before_a_report_redelivers_the_event(
    trigger: LocalAirflowTrigger,
    cfg: RuntimeConfig,
    small_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Backends(cfg).landing.land(small_csv)

    def crash(obj: LandedObject, **_: object) -> DagRunReport:
        raise RuntimeError("airflow db migrate failed")

    monkeypatch.setattr(trigger, "run", crash)
    with pytest.raises(RuntimeError):
        trigger.dispatch_pending()

    assert len(_queue(cfg, "pending")) == 1 and _queue(cfg, "failed") == []
