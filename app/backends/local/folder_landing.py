"""The local landing zone: a folder standing in for the GCS landing bucket.

``land`` copies a file in atomically and writes an object-finalize event into
``.events/pending``: the stand-in for the bucket's Pub/Sub notification, consumed with
the same pull / ack / nack semantics (:class:`app.core.ports.LandingEvents`). The local
trigger (:mod:`app.local.trigger`) pulls those events and starts DAG runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from app.backends._process import pid_alive
from app.core.config import LocalLandingConfig
from app.core.errors import InvalidInputError, NotFoundError
from app.core.records import LandedObject, LandingClaim, LocalCopy

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_CHUNK = 1 << 20
# Deliveries of one event before it is dead-lettered into .events/failed.
MAX_DELIVERY_ATTEMPTS = 5


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FolderLandingZone:
    """Both roles, :class:`LandingZone` and :class:`LandingEvents`, on one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events = self.root / ".events"

    @classmethod
    def from_config(cls, section: LocalLandingConfig, _backends: object) -> Self:
        return cls(section.path)

    @property
    def location(self) -> str:
        return str(self.root)

    def land(self, source: Path, *, name: str | None = None) -> LandedObject:
        source = Path(source)
        if not source.is_file():
            raise InvalidInputError("no such file", location=str(source))
        name = name or source.name
        if not _SAFE_NAME.match(name):
            raise InvalidInputError(
                "object name may hold only letters, digits, '.', '_' and '-'", location=name
            )
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        tmp = self.root / f".{name}.{os.getpid()}.part"
        shutil.copyfile(source, tmp)
        content_hash = file_sha256(tmp)
        os.replace(tmp, target)  # readers see the old object or the new one, never half
        landed = LandedObject(name=name, uri=target.resolve().as_uri(), content_hash=content_hash)
        self._announce(landed)
        return landed

    @contextmanager
    def local_copy(self, landed: LandedObject) -> Iterator[LocalCopy]:
        """The landed file itself: it is already local, and the landing folder is the one
        sensitive store here. The reader checks its bytes against ``landed.content_hash``:
        a file replaced since its event is refused there (its newer version has its own).
        """
        path = self.root / landed.name
        if not _SAFE_NAME.match(landed.name) or not path.is_file():
            raise NotFoundError(f"landed object {landed.name!r} does not exist")
        yield LocalCopy(path=path, landed=landed)

    def discover(self, *, settle_seconds: float = 2.0) -> list[LandedObject]:
        """Announce files put into the folder by other means (cp, rsync, a mounted share).

        A file counts as landed once it has not changed for ``settle_seconds``, so a
        copy still in progress is not read half-written; each (name, content) pair is
        announced once.
        """
        if not self.root.exists():
            return []
        seen = self._announced()
        now = time.time()
        fresh = []
        for path in sorted(self.root.iterdir()):
            if not path.is_file() or path.name.startswith(".") or not _SAFE_NAME.match(path.name):
                continue
            if now - path.stat().st_mtime < settle_seconds:
                continue
            content_hash = file_sha256(path)
            if (path.name, content_hash) in seen:
                continue
            landed = LandedObject(path.name, path.resolve().as_uri(), content_hash)
            self._announce(landed)
            fresh.append(landed)
        return fresh

    def _announced(self) -> set[tuple[str, str]]:
        seen = set()
        for event_file in self.events.glob("*/*.json") if self.events.exists() else []:
            try:
                data = json.loads(event_file.read_text())
            except FileNotFoundError:
                continue  # moved between queues while we looked; seen under its new name
            seen.add((data["name"], data["content_hash"]))
        return seen

    # -- the notification queue ------------------------------------------------

    def _announce(self, landed: LandedObject) -> None:
        pending = self.events / "pending"
        pending.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        event = {
            "name": landed.name,
            "uri": landed.uri,
            "content_hash": landed.content_hash,
            "event_type": "OBJECT_FINALIZE",
            "time": stamp,
            "delivery_attempt": 0,
        }
        _write_json(pending / f"{stamp}-{(landed.content_hash or '')[:8]}.json", event)

    def pull(self, only: LandedObject | None = None) -> LandingClaim | None:
        """Take the oldest pending event (or the one for ``only``).

        The rename is the lock: one consumer wins it. The claimed file carries the
        claimer's pid, so a claim left by a killed process can be handed back.
        """
        pending = self.events / "pending"
        claimed = self.events / "claimed"
        claimed.mkdir(parents=True, exist_ok=True)
        for event_file in sorted(pending.glob("*.json")) if pending.exists() else []:
            try:
                data = json.loads(event_file.read_text())
            except FileNotFoundError:
                continue  # another consumer took it
            landed = LandedObject(data["name"], data["uri"], data["content_hash"])
            if only is not None and (landed.name, landed.content_hash) != (
                only.name,
                only.content_hash,
            ):
                continue
            target = claimed / f"{os.getpid()}~{event_file.name}"
            try:
                os.replace(event_file, target)
            except FileNotFoundError:
                continue  # another consumer took it
            attempt = int(data.get("delivery_attempt", 0)) + 1
            _write_json(target, {**data, "delivery_attempt": attempt})
            return LandingClaim(ack_id=str(target), landed=landed, delivery_attempt=attempt)
        return None

    def ack(self, claim: LandingClaim) -> None:
        self._settle(Path(claim.ack_id), "done")

    def nack(self, claim: LandingClaim, *, retry: bool) -> None:
        """Back to pending for another delivery, unless it has had its share of them."""
        again = retry and claim.delivery_attempt < MAX_DELIVERY_ATTEMPTS
        self._settle(Path(claim.ack_id), "pending" if again else "failed")

    def _settle(self, event_file: Path, where: str) -> None:
        target_dir = self.events / where
        target_dir.mkdir(parents=True, exist_ok=True)
        os.replace(event_file, target_dir / event_file.name.split("~", 1)[-1])

    def recover(self) -> int:
        """Hand back claims whose process is gone (killed mid-run), so the file is not lost."""
        claimed = self.events / "claimed"
        requeued = 0
        for event_file in claimed.glob("*~*.json") if claimed.exists() else []:
            pid_text, original = event_file.name.split("~", 1)
            if pid_alive(int(pid_text)):
                continue
            try:
                (self.events / "pending").mkdir(parents=True, exist_ok=True)
                os.replace(event_file, self.events / "pending" / original)
                requeued += 1
            except FileNotFoundError:
                continue
        return requeued


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: readers never see half an event."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
