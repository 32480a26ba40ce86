"""The local landing zone: a folder standing in for the GCS landing bucket.

``land`` copies a file in atomically and writes an object-finalize event into
``.events/pending``: the stand-in for the bucket's Pub/Sub notification, consumed with
the same pull / ack / nack semantics (:class:`app.core.ports.LandingEvents`). The local
trigger (:mod:`app.local.trigger`) pulls those events and starts DAG runs.

The queue is folders, one JSON file per event, moved between them by atomic renames:
``pending`` (due at its ``next_delivery``, when it has one), ``claimed`` (named after
the consumer's pid), ``done`` and ``failed`` (the dead letters, each with its reason).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from app.backends._process import pid_alive
from app.core.config import LocalLandingConfig
from app.core.errors import InvalidInputError, NotFoundError
from app.core.records import (
    MAX_DELIVERIES,
    DeadLetter,
    LandedObject,
    LandingClaim,
    LocalCopy,
    RunFailure,
    redelivery_delay,
)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FolderLandingZone:
    """Both roles, :class:`LandingZone` and :class:`LandingEvents`, on one folder."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.events = self.root / ".events"
        # The queue's clock (epoch seconds): when a handed-back event is due again.
        self.clock = clock

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
        self._write_event(landed, "pending", {"delivery_attempt": 0})

    def _write_event(self, landed: LandedObject, where: str, extra: dict[str, Any]) -> Path:
        queue = self.events / where
        queue.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        event = {
            "name": landed.name,
            "uri": landed.uri,
            "content_hash": landed.content_hash,
            "event_type": "OBJECT_FINALIZE",
            "time": stamp,
            **extra,
        }
        path = queue / f"{stamp}-{(landed.content_hash or '')[:8]}.json"
        _write_json(path, event)
        return path

    def pull(self, only: LandedObject | None = None) -> LandingClaim | None:
        """Take the oldest due pending event (or the one for ``only``).

        The rename is the lock: one consumer wins it. The claimed file carries the
        claimer's pid, so a claim left by a killed process can be handed back. An event
        handed back with a ``next_delivery`` time waits until then (the backoff).
        """
        pending = self.events / "pending"
        claimed = self.events / "claimed"
        claimed.mkdir(parents=True, exist_ok=True)
        now = self.clock()
        for event_file in sorted(pending.glob("*.json")) if pending.exists() else []:
            try:
                data = json.loads(event_file.read_text())
            except FileNotFoundError:
                continue  # another consumer took it
            if float(data.get("next_delivery") or 0.0) > now:
                continue
            landed = _landed(data)
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
            return LandingClaim(
                ack_id=str(target),
                landed=landed,
                delivery_attempt=attempt,
                event_id=_event_id(event_file),
            )
        return None

    def ack(self, claim: LandingClaim) -> None:
        self._settle(Path(claim.ack_id), "done")

    def nack(self, claim: LandingClaim, *, reason: RunFailure, retry_after: float) -> None:
        """Back to pending, due in ``retry_after`` seconds, unless it has had its
        ``MAX_DELIVERIES``: then dead-lettered with ``reason``."""
        event_file = Path(claim.ack_id)
        if claim.delivery_attempt >= MAX_DELIVERIES:
            self.dead_letter(claim, reason=reason)
            return
        data = _read_json(event_file)
        data["next_delivery"] = self.clock() + max(retry_after, 0.0)
        data["last_failure"] = reason.as_dict()
        _write_json(event_file, data)
        self._settle(event_file, "pending")

    def dead_letter(self, claim: LandingClaim, *, reason: RunFailure) -> None:
        event_file = Path(claim.ack_id)
        data = _read_json(event_file)
        data["dead_letter"] = {"reason": reason.as_dict(), "at": datetime.now(UTC).isoformat()}
        _write_json(event_file, data)
        self._settle(event_file, "failed")

    def dead_letter_landed(self, landed: LandedObject, *, reason: RunFailure) -> str:
        """Straight into ``failed`` as an event delivered once. The local trigger settles
        its own claims (:meth:`dead_letter`), so only a run started by other means
        comes here."""
        letter = {"reason": reason.as_dict(), "at": datetime.now(UTC).isoformat()}
        path = self._write_event(landed, "failed", {"delivery_attempt": 1, "dead_letter": letter})
        return _event_id(path)

    def dead_letters(self) -> list[DeadLetter]:
        failed = self.events / "failed"
        letters = []
        for event_file in sorted(failed.glob("*.json")) if failed.exists() else []:
            try:
                data = json.loads(event_file.read_text())
            except FileNotFoundError:
                continue  # re-queued while we looked
            letter = data.get("dead_letter") or {}
            # Events dead-lettered before reasons were kept say so rather than nothing.
            reason = letter.get("reason") or {
                "task": "unknown",
                "error_class": "Exception",
                "message": "dead-lettered without a recorded reason",
            }
            letters.append(
                DeadLetter(
                    event_id=_event_id(event_file),
                    landed=_landed(data),
                    delivery_attempts=int(data.get("delivery_attempt", 0)),
                    reason=RunFailure.from_dict(reason),
                    dead_lettered_at=str(letter.get("at") or ""),
                )
            )
        return letters

    def requeue(self, event_id: str | None = None) -> list[str]:
        """Dead letters back to pending, due now, with their delivery count reset."""
        failed = self.events / "failed"
        if event_id is not None and (
            not _SAFE_NAME.match(event_id) or not (failed / f"{event_id}.json").is_file()
        ):
            raise NotFoundError(f"no dead-lettered landing event {event_id!r}")
        names = [f"{event_id}.json"] if event_id else [p.name for p in failed.glob("*.json")]
        claimed = self.events / "claimed"
        claimed.mkdir(parents=True, exist_ok=True)
        requeued = []
        for name in sorted(names):
            # Taken as a claim first, so two `retry`s never both re-queue one event and a
            # retry killed half-way leaves a claim that recover() hands back.
            mine = claimed / f"{os.getpid()}~{name}"
            try:
                os.replace(failed / name, mine)
            except FileNotFoundError:
                continue  # another retry took it
            data = _read_json(mine)
            for key in ("dead_letter", "next_delivery"):
                data.pop(key, None)
            data.update(delivery_attempt=0, requeued_at=datetime.now(UTC).isoformat())
            _write_json(mine, data)
            self._settle(mine, "pending")
            requeued.append(name.removesuffix(".json"))
        if event_id is not None and not requeued:
            raise NotFoundError(f"no dead-lettered landing event {event_id!r}")
        return requeued

    def _settle(self, event_file: Path, where: str) -> None:
        target_dir = self.events / where
        target_dir.mkdir(parents=True, exist_ok=True)
        os.replace(event_file, target_dir / event_file.name.split("~", 1)[-1])

    def recover(self) -> int:
        """Hand back claims whose process is gone (killed mid-run), so the file is not lost.

        A killed run is a failed delivery like any transient one: it waits out the
        backoff, and one that has had its ``MAX_DELIVERIES`` is dead-lettered.
        """
        claimed = self.events / "claimed"
        recovered = 0
        for event_file in sorted(claimed.glob("*~*.json")) if claimed.exists() else []:
            pid_text, original = event_file.name.split("~", 1)
            if pid_alive(int(pid_text)):
                continue
            # Re-claimed under this pid first: of two recoverers, one wins the rename.
            mine = claimed / f"{os.getpid()}~{original}"
            try:
                os.replace(event_file, mine)
                data = _read_json(mine)
            except FileNotFoundError:
                continue
            attempt = int(data.get("delivery_attempt", 0))
            claim = LandingClaim(str(mine), _landed(data), attempt, _event_id(mine))
            reason = RunFailure(
                task="delivery",
                error_class="ConsumerDied",
                message=f"the consumer (pid {pid_text}) ended during delivery {attempt} "
                "without settling it (killed, or the machine went down)",
            )
            self.nack(claim, reason=reason, retry_after=redelivery_delay(attempt))
            recovered += 1
        return recovered


def _event_id(event_file: Path) -> str:
    """The event's own name: the queue file's, without the claimer's pid."""
    return event_file.name.split("~", 1)[-1].removesuffix(".json")


def _landed(data: dict[str, Any]) -> LandedObject:
    return LandedObject(data["name"], data["uri"], data["content_hash"])


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: readers never see half an event."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
