from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.backends.local.folder_landing import (
    MAX_DELIVERY_ATTEMPTS,
    FolderLandingZone,
    file_sha256,
)
from app.core.errors import InvalidInputError, NotFoundError
from app.core.records import LandedObject


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


def test_recover_returns_dead_claims_to_pending(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    landed = zone.land(small_csv)
    claim = zone.pull()
    assert claim is not None
    assert zone.recover() == 0  # this process is alive
    claimed = Path(claim.ack_id)
    dead = claimed.with_name("999999999~" + claimed.name.split("~", 1)[1])
    claimed.rename(dead)
    assert zone.recover() == 1
    again = zone.pull()
    assert again is not None and again.landed == landed and again.delivery_attempt == 2
    zone.ack(again)
    assert [p.name for p in (zone.events / "done").iterdir()] == [dead.name.split("~", 1)[1]]
    assert zone.pull() is None


def test_nack_retry_redelivers_until_the_attempts_run_out(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    landed = zone.land(small_csv)
    attempts = []
    while (claim := zone.pull()) is not None:
        assert claim.landed == landed
        attempts.append(claim.delivery_attempt)
        zone.nack(claim, retry=True)
    assert attempts == list(range(1, MAX_DELIVERY_ATTEMPTS + 1))
    assert len(list((zone.events / "failed").iterdir())) == 1


def test_nack_without_retry_dead_letters_at_once(tmp_path: Path, small_csv: Path) -> None:
    zone = FolderLandingZone(tmp_path / "landing")
    zone.land(small_csv)
    claim = zone.pull()
    assert claim is not None
    zone.nack(claim, retry=False)
    assert zone.pull() is None
    assert len(list((zone.events / "failed").iterdir())) == 1
