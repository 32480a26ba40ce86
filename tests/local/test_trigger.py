"""The local trigger acks, redelivers (with backoff) or dead-letters each landing event by
its run's result.

The DAG run itself is replaced by a stand-in that returns a report (the e2e test runs
the real one); the landing zone and its event queue are the real folder.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.backends import Backends
from app.backends.local.folder_landing import FolderLandingZone
from app.core.config import RuntimeConfig
from app.core.errors import BackendUnavailableError, InvalidInputError, PipelineFailedError
from app.core.records import MAX_DELIVERIES, LandedObject, RunFailure
from app.local import trigger as trigger_module
from app.local.trigger import DagRunReport, LocalAirflowTrigger, settle

Run = Callable[..., DagRunReport]
"""What stands in for the trigger's DAG run: the landed object in, its report out."""
RunAs = Callable[[Run], None]


def _report(landed: LandedObject, state: str, failure: RunFailure | None = None) -> DagRunReport:
    return DagRunReport(landed.name, "manual__1", state, {"load_raw": state}, "x.log", failure)


def _raising(error: BaseException) -> Run:
    """A stand-in run that dies with `error` before it has a report."""

    def run(*_: object, **__: object) -> DagRunReport:
        raise error

    return run


@pytest.fixture
def trigger(cfg: RuntimeConfig) -> LocalAirflowTrigger:
    return LocalAirflowTrigger(cfg)


@pytest.fixture
def landed(cfg: RuntimeConfig, small_csv: Path) -> LandedObject:
    """The small file, landed: its event waits in the trigger's queue."""
    return Backends(cfg).landing.land(small_csv)


@pytest.fixture
def run_as(trigger: LocalAirflowTrigger, monkeypatch: pytest.MonkeyPatch) -> RunAs:
    """Replaces the trigger's DAG run by a stand-in (again on each call)."""

    def replace(run: Run) -> None:
        monkeypatch.setattr(trigger, "run", run)

    return replace


def _queue(cfg: RuntimeConfig, name: str) -> list[str]:
    folder = Path(Backends(cfg).landing.location) / ".events" / name
    return sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []


def test_dispatch_success_acks_the_event(
    trigger: LocalAirflowTrigger, cfg: RuntimeConfig, landed: LandedObject, run_as: RunAs
) -> None:
    run_as(lambda obj, **_: _report(obj, "success"))

    (report,) = trigger.dispatch_pending()

    assert report.ok and report.object_name == landed.name
    assert (len(_queue(cfg, "done")), _queue(cfg, "pending"), _queue(cfg, "failed")) == (1, [], [])


@pytest.mark.usefixtures("landed")
def test_dispatch_bad_file_dead_letters_and_reraises_with_its_location(
    trigger: LocalAirflowTrigger, cfg: RuntimeConfig, run_as: RunAs
) -> None:
    bad = RunFailure("load_raw", "InvalidInputError", "not a number", "small.csv:3:4")
    run_as(lambda obj, **_: _report(obj, "failed", bad))

    (report,) = trigger.dispatch_pending()

    assert not report.retryable
    assert (_queue(cfg, "pending"), len(_queue(cfg, "failed"))) == ([], 1)
    with pytest.raises(InvalidInputError) as caught:
        report.raise_for_error()
    assert caught.value.location == "small.csv:3:4"


def test_dispatch_transient_failure_hands_the_event_back_and_goes_on_with_the_rest(
    trigger: LocalAirflowTrigger, cfg: RuntimeConfig, small_csv: Path, run_as: RunAs
) -> None:
    clock = _fake_clock(trigger, cfg)
    Backends(cfg).landing.land(small_csv, name="a.csv")
    Backends(cfg).landing.land(small_csv, name="b.csv")
    down = RunFailure("load_raw", "BackendUnavailableError", "warehouse locked")
    run_as(lambda obj, **_: _report(obj, "failed", down))

    reports = trigger.dispatch_pending()  # each handed back once, not again this round

    assert [(r.object_name, r.retryable, r.settled) for r in reports] == [
        ("a.csv", True, "redelivered in 1s"),
        ("b.csv", True, "redelivered in 1s"),
    ]
    assert len(_queue(cfg, "pending")) == 2 and _queue(cfg, "failed") == []
    run_as(lambda obj, **_: _report(obj, "success"))
    assert trigger.dispatch_pending() == []  # not due yet
    clock.now += 1.0
    assert [r.object_name for r in trigger.dispatch_pending()] == ["a.csv", "b.csv"]
    assert len(_queue(cfg, "done")) == 2


@pytest.mark.usefixtures("landed")
def test_dispatch_crash_before_a_report_redelivers_the_event(
    trigger: LocalAirflowTrigger, cfg: RuntimeConfig, run_as: RunAs
) -> None:
    run_as(_raising(PipelineFailedError("DAG run for small.csv crashed; see x.log")))
    (report,) = trigger.dispatch_pending()

    assert (report.state, report.retryable) == ("crashed", True)
    assert report.settled == "redelivered in 1s"
    assert report.failure is not None and report.failure.task == "run"
    assert len(_queue(cfg, "pending")) == 1 and _queue(cfg, "failed") == []
    with pytest.raises(PipelineFailedError):
        report.raise_for_error()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _fake_clock(trigger: LocalAirflowTrigger, cfg: RuntimeConfig) -> Clock:
    """The trigger's queue on a clock the test moves: backoff without sleeping."""
    clock = Clock()
    zone = FolderLandingZone(Path(Backends(cfg).landing.location), clock=clock)
    trigger.backends.__dict__["landing_events"] = zone  # the cached role, replaced
    return clock


@pytest.mark.parametrize(
    ("failure", "state", "dead_at_once"),
    [
        (RunFailure("load_raw", "InvalidInputError", "not a number", "f.csv:3:4"), "failed", True),
        (RunFailure("load_raw", "ConfigError", "no such dataset"), "failed", True),
        (RunFailure("snapshot", "NotFoundError", "no such ingest"), "failed", True),
        (RunFailure("load_raw", "BackendUnavailableError", "locked"), "failed", False),
        (RunFailure("snapshot", "ConflictError", "lock held"), "failed", False),
        (RunFailure("transform", "KeyError", "'Amount'"), "failed", False),
        (RunFailure("transform", "AirflowTaskTimeout", "timed out"), "failed", False),
        (None, "failed", False),
        (RunFailure("run", "PipelineFailedError", "DAG run crashed"), "crashed", False),
    ],
)
def test_settle_classifies_the_files_fault_as_final_and_the_rest_as_transient(
    trigger: LocalAirflowTrigger,
    cfg: RuntimeConfig,
    landed: LandedObject,
    failure: RunFailure | None,
    state: str,
    dead_at_once: bool,
) -> None:
    events = trigger.backends.landing_events
    claim = events.pull()
    assert claim is not None

    settled = settle(events, claim, _report(landed, state, failure))

    if dead_at_once:
        assert settled == "dead-lettered"
        (letter,) = events.dead_letters()
        assert letter.reason == failure and letter.delivery_attempts == 1
    else:
        assert settled == "redelivered in 1s"
        assert events.dead_letters() == [] and len(_queue(cfg, "pending")) == 1


@pytest.mark.usefixtures("landed")
def test_dispatch_transient_failure_every_delivery_dead_letters_with_reason_after_five(
    trigger: LocalAirflowTrigger, cfg: RuntimeConfig, run_as: RunAs
) -> None:
    clock = _fake_clock(trigger, cfg)
    down = RunFailure("load_raw", "BackendUnavailableError", "warehouse locked")
    run_as(lambda obj, **_: _report(obj, "failed", down))
    settled = []
    for _ in range(MAX_DELIVERIES + 2):
        settled += [r.settled for r in trigger.dispatch_pending()]
        clock.now += 30.0

    assert settled == [
        "redelivered in 1s",
        "redelivered in 2s",
        "redelivered in 4s",
        "redelivered in 8s",
        "dead-lettered after 5 deliveries",
    ]
    (letter,) = trigger.backends.landing_events.dead_letters()
    assert letter.reason == down and letter.delivery_attempts == MAX_DELIVERIES


def test_dispatch_migrate_failure_is_redelivered_not_dead_lettered(
    trigger: LocalAirflowTrigger,
    cfg: RuntimeConfig,
    landed: LandedObject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    migrate_fails = BackendUnavailableError("airflow db migrate failed (exit 1); see migrate.log")
    monkeypatch.setattr(trigger, "ensure_db", _raising(migrate_fails))
    (report,) = trigger.dispatch_pending(only=landed)

    assert report.state == "crashed" and report.retryable
    assert report.failure is not None and report.failure.error_class == "BackendUnavailableError"
    assert len(_queue(cfg, "pending")) == 1 and _queue(cfg, "failed") == []
    with pytest.raises(BackendUnavailableError):
        report.raise_for_error()  # `ingest` exits 4, and the event waits for `watch`


@pytest.mark.usefixtures("landed")
def test_dispatch_interrupted_hands_the_event_back_at_once_and_reraises(
    trigger: LocalAirflowTrigger, run_as: RunAs
) -> None:
    run_as(_raising(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trigger.dispatch_pending()

    assert trigger.backends.landing_events.pull() is not None  # due now, not dead-lettered


def test_ensure_db_concurrent_first_starts_migrate_once_and_none_fails(
    cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What two `airflow db migrate` at once on one SQLite file do: one of them fails."""
    calls: list[int] = []
    running = threading.Lock()
    home = LocalAirflowTrigger(cfg).home

    def migrate(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        if not running.acquire(blocking=False):
            return subprocess.CompletedProcess(cmd, 1, "", "database is locked")
        try:
            calls.append(1)
            time.sleep(0.2)
            (home / "airflow.db").touch()
            return subprocess.CompletedProcess(cmd, 0, "", "")
        finally:
            running.release()

    monkeypatch.setattr(trigger_module.subprocess, "run", migrate)
    failures: list[BaseException] = []

    def first_start() -> None:
        try:
            LocalAirflowTrigger(cfg).ensure_db()
        except BaseException as exc:  # collected for the assert
            failures.append(exc)

    threads = [threading.Thread(target=first_start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == [] and calls == [1]
