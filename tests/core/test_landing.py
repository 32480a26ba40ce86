from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.core.errors import InvalidInputError, NotFoundError
from app.core.landing import LocalLandingZone, file_sha256


def test_land_copies_file_and_announces_one_event(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    landed = zone.land(small_csv, name="day1.csv")
    assert landed.content_hash == file_sha256(small_csv)
    assert landed.ingest_id == f"day1.csv@{landed.content_hash[:16]}"
    assert zone.local_path("day1.csv").read_bytes() == small_csv.read_bytes()
    claimed = zone.claim_next()
    assert claimed is not None and claimed[1] == landed
    assert zone.claim_next() is None


def test_land_rejects_unsafe_names(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    with pytest.raises(InvalidInputError):
        zone.land(small_csv, name="../escape.csv")
    with pytest.raises(NotFoundError):
        zone.local_path("../small.csv")


def test_scan_announces_dropped_file_once(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    zone.root.mkdir(parents=True)
    dropped = zone.root / "dropped.csv"
    dropped.write_bytes(small_csv.read_bytes())
    old = time.time() - 60
    os.utime(dropped, (old, old))
    (found,) = zone.scan()
    assert found.name == "dropped.csv"
    assert zone.scan() == []
    claimed = zone.claim_next()
    assert claimed is not None and claimed[1] == found


def test_scan_skips_file_still_being_written(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    zone.root.mkdir(parents=True)
    (zone.root / "copying.csv").write_bytes(small_csv.read_bytes())
    assert zone.scan(settle_seconds=30) == []


def test_scan_already_landed_file_is_not_announced_again(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    zone.land(small_csv)
    assert zone.scan(settle_seconds=0) == []


def test_claim_next_only_takes_the_named_objects_event(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    first = zone.land(small_csv, name="a.csv")
    second = zone.land(small_csv, name="b.csv")
    claimed = zone.claim_next(only=second)
    assert claimed is not None and claimed[1] == second
    rest = zone.claim_next()
    assert rest is not None and rest[1] == first


def test_requeue_orphans_returns_dead_claims_to_pending(tmp_path: Path, small_csv: Path) -> None:
    zone = LocalLandingZone(tmp_path / "landing")
    landed = zone.land(small_csv)
    claimed = zone.claim_next()
    assert claimed is not None
    assert zone.requeue_orphans() == 0  # this process is alive
    dead = claimed[0].with_name("999999999~" + claimed[0].name.split("~", 1)[1])
    claimed[0].rename(dead)
    assert zone.requeue_orphans() == 1
    again = zone.claim_next()
    assert again is not None and again[1] == landed
    zone.finish(again[0], ok=True)
    assert [p.name for p in (zone.events / "done").iterdir()] == [dead.name.split("~", 1)[1]]
