from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.backends.local.folder_landing import FolderLandingZone, file_sha256
from app.core.errors import InvalidInputError, NotFoundError
from app.core.records import MAX_DELIVERIES, LandedObject, RunFailure, redelivery_delay


def test_land_copies_file_and_announces_one_event(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    landed = zone.land(small_csv, name="day1.csv")
    assert landed.content_hash == file_sha256(small_csv)
    assert landed.ingest_id == f"day1.csv@{landed.content_hash[:16]}"
    with zone.local_copy(landed) as copy:
        assert copy.path.read_bytes() == small_csv.read_bytes()
        assert copy.landed == landed
    claim = zone.pull()
    assert claim is not None and claim.landed == landed and claim.delivery_attempt == 1
    assert zone.pull() is None


def test_land_rejects_unsafe_names(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    with pytest.raises(InvalidInputError):
        zone.land(small_csv, name="../escape.csv")
    with pytest.raises(NotFoundError), zone.local_copy(LandedObject("../small.csv", "file:///x")):
        pass


def test_discover_announces_dropped_file_once(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    zone.root.mkdir(parents=True)
    dropped = zone.root / "dropped.csv"
    dropped.write_bytes(small_csv.read_bytes())
    old = time.time() - 60
    os.utime(dropped, (old, old))
    (found,) = zone.discover(settle_seconds=2)
    assert found.name == "dropped.csv"
    assert zone.discover(settle_seconds=2) == []
    claim = zone.pull()
    assert claim is not None and claim.landed == found


def test_discover_skips_file_still_being_written(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    zone.root.mkdir(parents=True)
    (zone.root / "copying.csv").write_bytes(small_csv.read_bytes())
    assert zone.discover(settle_seconds=30) == []


def test_discover_already_landed_file_is_not_announced_again(
    tmp_path: Path, small_csv: Path
) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    zone.land(small_csv)
    assert zone.discover(settle_seconds=0) == []


def test_pull_only_takes_the_named_objects_event(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    first = zone.land(small_csv, name="a.csv")
    second = zone.land(small_csv, name="b.csv")
    claim = zone.pull(only=second)
    assert claim is not None and claim.landed == second
    rest = zone.pull()
    assert rest is not None and rest.landed == first


class Clock:
    """The queue's clock, moved by hand: backoff without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


TRANSIENT = RunFailure("load_raw", "BackendUnavailableError", "warehouse locked")
BAD = RunFailure("load_raw", "InvalidInputError", "is not a number", "day1.csv:3:4")


def _zone(tmp_path: Path) -> tuple[FolderLandingZone, Clock]:
    clock = Clock()
    return FolderLandingZone(tmp_path / "landing", clock=clock), clock


def _kill_claimer(claim_path: Path) -> Path:
    """Rename a claim as if a process that is gone (pid 999999999) held it."""
    dead = claim_path.with_name("999999999~" + claim_path.name.split("~", 1)[1])
    claim_path.rename(dead)
    return dead


def test_recover_dead_claim_returns_to_pending_after_backoff(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, clock = _zone(tmp_path)
    landed = zone.land(small_csv)
    claim = zone.pull()
    assert claim is not None and claim.event_id
    assert zone.recover() == 0  # this process is alive
    dead = _kill_claimer(Path(claim.ack_id))

    assert zone.recover() == 1
    assert zone.pull() is None  # not due before the first backoff (1 s)
    clock.now += redelivery_delay(1)
    again = zone.pull()
    assert again is not None and again.landed == landed and again.delivery_attempt == 2
    assert again.event_id == claim.event_id
    zone.ack(again)
    assert [p.name for p in (zone.events / "done").iterdir()] == [dead.name.split("~", 1)[1]]
    assert zone.pull() is None


def test_recover_claim_killed_at_the_last_delivery_dead_letters_with_reason(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, clock = _zone(tmp_path)
    zone.land(small_csv)
    for _ in range(MAX_DELIVERIES - 1):
        claim = zone.pull()
        assert claim is not None
        zone.nack(claim, reason=TRANSIENT, retry_after=0)
    last = zone.pull()
    assert last is not None and last.delivery_attempt == MAX_DELIVERIES
    _kill_claimer(Path(last.ack_id))

    assert zone.recover() == 1
    (letter,) = zone.dead_letters()
    assert letter.reason.error_class == "ConsumerDied"
    assert "pid 999999999" in letter.reason.message
    assert letter.delivery_attempts == MAX_DELIVERIES


def test_nack_waits_out_the_backoff_then_dead_letters_after_max_deliveries(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, clock = _zone(tmp_path)
    landed = zone.land(small_csv)
    attempts = []
    for _ in range(MAX_DELIVERIES):
        claim = zone.pull()
        assert claim is not None and claim.landed == landed
        attempts.append(claim.delivery_attempt)
        delay = redelivery_delay(claim.delivery_attempt)
        zone.nack(claim, reason=TRANSIENT, retry_after=delay)
        clock.now += delay - 0.01
        assert zone.pull() is None  # not before next_delivery
        clock.now += 0.01
    assert attempts == list(range(1, MAX_DELIVERIES + 1))
    assert zone.pull() is None
    (letter,) = zone.dead_letters()
    assert letter.reason == TRANSIENT and letter.delivery_attempts == MAX_DELIVERIES


def test_dead_letter_keeps_the_reason_and_is_never_delivered_again(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, clock = _zone(tmp_path)
    landed = zone.land(small_csv, name="day1.csv")
    claim = zone.pull()
    assert claim is not None
    zone.dead_letter(claim, reason=BAD)
    clock.now += 3600
    assert zone.pull() is None
    (letter,) = zone.dead_letters()
    assert (letter.event_id, letter.landed, letter.reason) == (claim.event_id, landed, BAD)
    assert letter.delivery_attempts == 1 and letter.dead_lettered_at
    assert letter.as_dict()["reason"]["location"] == "day1.csv:3:4"


def test_dead_letter_landed_unclaimed_event_is_listed_and_requeued(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, _ = _zone(tmp_path)
    landed = zone.land(small_csv, name="day1.csv")
    claim = zone.pull()
    assert claim is not None
    zone.ack(claim)  # settled by its consumer before its run failed for good

    event_id = zone.dead_letter_landed(landed, reason=BAD)

    (letter,) = zone.dead_letters()
    assert (letter.event_id, letter.landed, letter.reason) == (event_id, landed, BAD)
    assert letter.delivery_attempts == 1 and letter.dead_lettered_at
    assert zone.pull() is None
    assert zone.requeue(event_id) == [event_id]
    again = zone.pull()
    assert again is not None and again.landed == landed and again.delivery_attempt == 1


def test_requeue_one_id_delivers_it_again_with_a_fresh_count(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, _ = _zone(tmp_path)
    zone.land(small_csv, name="a.csv")
    zone.land(small_csv, name="b.csv")
    for _ in range(2):
        claim = zone.pull()
        assert claim is not None
        zone.dead_letter(claim, reason=BAD)
    first, second = zone.dead_letters()

    assert zone.requeue(first.event_id) == [first.event_id]
    claim = zone.pull()
    assert claim is not None and claim.event_id == first.event_id
    assert claim.delivery_attempt == 1 and claim.landed.name == "a.csv"
    assert [d.event_id for d in zone.dead_letters()] == [second.event_id]


def test_requeue_without_id_requeues_every_dead_letter(tmp_path: Path, small_csv: Path) -> None:
    zone, _ = _zone(tmp_path)
    assert zone.requeue() == []
    zone.land(small_csv, name="a.csv")
    zone.land(small_csv, name="b.csv")
    while (claim := zone.pull()) is not None:
        zone.dead_letter(claim, reason=BAD)
    ids = [d.event_id for d in zone.dead_letters()]

    assert zone.requeue() == ids
    assert zone.dead_letters() == []
    assert [c.landed.name for c in iter(zone.pull, None)] == ["a.csv", "b.csv"]


@pytest.mark.parametrize("event_id", ["nope", "../pending/x", ""])
def test_requeue_unknown_id_raises_not_found(
    tmp_path: Path, small_csv: Path, event_id: str
) -> None:
    zone, _ = _zone(tmp_path)
    zone.land(small_csv)
    with pytest.raises(NotFoundError):
        zone.requeue(event_id)


def test_dead_letters_written_before_reasons_were_kept_say_so(
    tmp_path: Path, small_csv: Path
) -> None:
    zone, _ = _zone(tmp_path)
    zone.land(small_csv)
    claim = zone.pull()
    assert claim is not None
    zone._settle(Path(claim.ack_id), "failed")  # as the queue did before reasons
    (letter,) = zone.dead_letters()
    assert letter.reason.task == "unknown" and "without a recorded reason" in letter.reason.message


def test_redelivery_delay_doubles_from_one_second_to_thirty() -> None:
    assert [redelivery_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert redelivery_delay(0) == 1
