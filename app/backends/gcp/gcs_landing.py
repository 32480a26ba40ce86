"""The GCP landing zone: the landing bucket, written and read with google-cloud-storage.

``land`` uploads a file create-only (``ifGenerationMatch=0``); the bucket's
OBJECT_FINALIZE notification (``components/landing.py``) is its announcement, and
Composer turns that Pub/Sub message into the DAG run conf with
:func:`landed_from_notification`. ``local_path`` downloads exactly the announced
generation into a private temporary copy for the reader.

**The temporary copies hold card numbers.** Each lives in a directory of its own
(mode 0700) under this instance's scratch directory, itself 0700, named after the
owning process; the file is 0600 and written through a descriptor opened with
``O_EXCL | O_NOFOLLOW``. They are removed:

- by the caller, with :meth:`GcsLandingZone.release` (or :meth:`~GcsLandingZone.close`);
- when the zone is garbage-collected or the interpreter exits normally
  (:func:`weakref.finalize`);
- otherwise by the next zone in any process of the same user that downloads: it
  sweeps scratch directories whose owning process is gone. That covers what the
  above cannot: SIGKILL, and Airflow's task processes, which leave through
  ``os._exit`` and so never run exit handlers.

So a copy outlives its load only until the next download on that machine, or until
the machine's temporary storage goes (a Composer worker's is the pod's own).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Self

import google.cloud.storage as storage
from google.api_core import retry as gretry
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from app.backends._process import pid_alive
from app.backends.gcp.calls import RETRY_STATUS, CallPolicy, is_transient, seam
from app.core.config import GcsLandingConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from app.core.ports import Services
from app.core.records import LandedObject, LocalCopy

log = logging.getLogger("fraud_mlops.backends.gcs_landing")

# The local landing zone's rule for names this project lands (the local and GCP
# backends may not import each other): one path segment, nothing hidden.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_GENERATION = re.compile(r"^[0-9]{1,20}$")
_CHUNK = 1 << 20
_FINALIZE = "OBJECT_FINALIZE"
_CONTENT_TYPE = "text/csv"
_SCRATCH_PREFIX = "fraud-mlops-landing-"
_SCRATCH_OWNER = re.compile(rf"^{_SCRATCH_PREFIX}(?P<ns>[0-9]+)-(?P<pid>[0-9]+)-")


def transient(exc: BaseException) -> bool:
    """Worth another attempt (:func:`calls.is_transient`); Cloud Storage's media layer
    says "5xx" with an ``InvalidResponse`` carrying the response."""
    return is_transient(exc) or (
        isinstance(exc, InvalidResponse)
        and getattr(exc.response, "status_code", None) in RETRY_STATUS
    )


@contextmanager
def _storage_seam(what: str) -> Iterator[None]:
    """:func:`calls.seam`, plus the client's own errors that are not google.api_core's."""
    with seam(what):
        try:
            yield
        except DataCorruption as exc:
            raise BackendUnavailableError(
                f"{what}: the bytes received do not match the object's checksum"
            ) from exc
        # Transport errors (requests, urllib3) are calls.seam's to translate.


class GcsLandingZone:
    """:class:`app.core.ports.LandingZone` on one GCS bucket.

    The bucket's notifications are consumed by Composer itself (an AssetWatcher on the
    landing subscription), so this class plays no :class:`LandingEvents` role; that
    role, with the dead letters of runs that failed, is
    :class:`app.backends.gcp.pubsub_landing_events.PubSubLandingEvents`.
    """

    def __init__(
        self,
        bucket: str,
        *,
        policy: CallPolicy,
        client: storage.Client | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        if client is None:
            with _storage_seam("create the Cloud Storage client"):
                # No call here needs a project (the bucket is named), so none is looked up.
                client = storage.Client(project=None)
        self._client = client
        self._bucket_name = bucket
        self._bucket = client.bucket(bucket)  # a handle only: no request, no bucket grant
        self._policy = policy
        self._scratch_parent = scratch_dir
        self._scratch: Path | None = None
        self._copies: dict[Path, LocalCopy] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, section: GcsLandingConfig, backends: Services) -> Self:
        return cls(section.bucket, policy=CallPolicy.from_config(backends.config.gcp_calls))

    @property
    def location(self) -> str:
        return f"gs://{self._bucket_name}"

    # -- landing -------------------------------------------------------------------

    def land(self, source: Path, *, name: str | None = None) -> LandedObject:
        """Upload ``source`` as a new object; the bucket's notification announces it.

        Landed objects are never replaced (the writers' grant cannot either): a name that
        already holds these same bytes returns that object, one that holds others raises
        ConflictError.
        """
        source = Path(source)
        if not source.is_file():
            raise InvalidInputError("no such file", location=str(source))
        name = name or source.name
        if not _SAFE_NAME.match(name):
            raise InvalidInputError(
                "object name may hold only letters, digits, '.', '_' and '-'", location=name
            )
        content_hash, md5 = _file_digests(source)
        uri = f"{self.location}/{name}"
        blob = self._bucket.blob(name)
        try:
            with _storage_seam(f"upload {uri}"):
                # Create-only: a retried attempt cannot add a second generation, so the
                # upload is safe to retry; the object is whole or absent (GCS finalizes
                # it at once).
                blob.upload_from_filename(
                    str(source),
                    content_type=_CONTENT_TYPE,
                    if_generation_match=0,
                    timeout=self._policy.timeout,
                    retry=self._retry(),
                )
        except ConflictError as exc:
            return self._existing(name, content_hash, md5, exc)
        if blob.md5_hash != md5:
            # Hashed before the upload; the bytes stored are not the bytes hashed.
            raise ConflictError(
                f"changed while it was being landed; {uri} generation {blob.generation} "
                "holds other bytes than were hashed",
                location=str(source),
            )
        return LandedObject(
            name=name, uri=uri, content_hash=content_hash, generation=int(blob.generation)
        )

    def _existing(self, name: str, content_hash: str, md5: str, exc: ConflictError) -> LandedObject:
        """The object already holding ``name``, if it holds exactly these bytes."""
        uri = f"{self.location}/{name}"
        try:
            with _storage_seam(f"read the metadata of {uri}"):
                existing = self._bucket.get_blob(
                    name, timeout=self._policy.timeout, retry=self._retry()
                )
        except ConfigError:
            existing = None  # writers may create objects but not read them
        if existing is None or existing.md5_hash != md5:
            raise ConflictError(
                f"{uri} already holds other content; landed objects are never replaced, "
                "land the file under a new name",
                location=name,
            ) from exc
        # The same bytes (a re-run, or a retry whose first attempt's answer was lost).
        return LandedObject(
            name=name, uri=uri, content_hash=content_hash, generation=int(existing.generation)
        )

    # -- reading ---------------------------------------------------------------------

    @contextmanager
    def local_copy(self, landed: LandedObject) -> Iterator[LocalCopy]:
        """A private copy of the pinned generation, deleted when the block ends."""
        copy = self.download(landed)
        try:
            yield copy
        finally:
            self.release(copy.path)

    def local_path(self, landed: LandedObject) -> Path:
        """A copy the caller must :meth:`release` (prefer :meth:`local_copy`)."""
        return self.download(landed).path

    def download(self, landed: LandedObject) -> LocalCopy:
        """A private local copy of exactly ``landed.generation`` (the live one for 0).

        The SHA-256 is computed as the bytes arrive. Raise NotFoundError when that
        generation is gone, ConflictError when its bytes are not ``landed.content_hash``.
        """
        _check_object_name(landed.name, "name")
        uri = f"{self.location}/{landed.name}"
        if landed.uri != uri:
            raise InvalidInputError(
                f"names {landed.uri!r}, which is not in {self.location}", location=landed.name
            )
        wanted = landed.generation or None
        shown = f"{uri} generation {landed.generation}" if wanted else f"{uri} (live generation)"
        directory = Path(
            tempfile.mkdtemp(prefix=f"g{landed.generation}-", dir=self._scratch_root())
        )
        path = directory / _local_name(landed.name)
        try:
            blob = self._bucket.blob(landed.name, generation=wanted)
            with _open_private(path) as fh:
                sink = _HashingSink(fh)
                with _storage_seam(f"download {shown}"):
                    # Pinned by the generation query parameter; on a live read the
                    # client pins a resumed attempt to the generation it first got.
                    blob.download_to_file(sink, timeout=self._policy.timeout, retry=self._retry())
        except NotFoundError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            why = " (deleted, or replaced in a bucket without versioning)" if wanted else ""
            raise NotFoundError(f"{shown} does not exist{why}") from exc
        except OSError as exc:
            # The copy could not be written (a full disk): nothing of it is kept.
            shutil.rmtree(directory, ignore_errors=True)
            raise BackendUnavailableError(
                f"cannot write the local copy of {shown}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        content_hash = sink.hexdigest()
        if landed.content_hash is not None and content_hash != landed.content_hash:
            shutil.rmtree(directory, ignore_errors=True)
            # As the reader says: the announced bytes are not these; if it was replaced,
            # its newer version has its own event.
            raise ConflictError(
                f"{shown} is not the content announced ({landed.content_hash[:16]}…)",
                location=landed.name,
            )
        read = int(blob.generation) if blob.generation is not None else landed.generation
        copy = LocalCopy(
            path=path,
            landed=LandedObject(landed.name, uri, content_hash=content_hash, generation=read),
        )
        with self._lock:
            self._copies[path] = copy
        log.info("read %s generation %d (%d bytes) into a private copy", uri, read, sink.size)
        return copy

    def copy_of(self, path: Path) -> LocalCopy:
        """What :meth:`local_path` read into ``path`` (which generation, which content)."""
        with self._lock:
            copy = self._copies.get(Path(path))
        if copy is None:
            raise NotFoundError(f"{path} is not a copy this landing zone holds")
        return copy

    def release(self, path: Path) -> None:
        """Delete a copy :meth:`local_path` made, now that it has been read."""
        with self._lock:
            copy = self._copies.pop(Path(path), None)
        if copy is not None:
            shutil.rmtree(copy.path.parent, ignore_errors=True)

    def close(self) -> None:
        """Delete every copy still held; the zone may download again afterwards."""
        with self._lock:
            scratch, self._scratch = self._scratch, None
            self._copies.clear()
        if scratch is not None:
            _remove_scratch(scratch, os.getpid())

    def _scratch_root(self) -> Path:
        with self._lock:
            if self._scratch is None:
                parent = Path(self._scratch_parent or tempfile.gettempdir())
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                sweep_dead_copies(parent)
                scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{_owner()}-", dir=parent))
                # On garbage collection or a normal exit; never in a forked child, whose
                # exit must not delete the copies its parent still reads.
                weakref.finalize(self, _remove_scratch, scratch, os.getpid())
                self._scratch = scratch
            return self._scratch

    def _retry(self) -> gretry.Retry:
        # The policy's deadline and backoff, with what Cloud Storage counts as transient.
        return self._policy.retry().with_predicate(transient)


# -- the notification ----------------------------------------------------------------


def landed_from_notification(attributes: Mapping[str, str], data: bytes) -> LandedObject:
    """The object a GCS Pub/Sub notification (OBJECT_FINALIZE) announces.

    ``attributes`` are the message's (``bucketId``, ``objectId``, ``objectGeneration``,
    ``eventType``); ``data`` its payload, the object resource as JSON (``JSON_API_V1``),
    which must agree with them, or empty (``NONE``). The content hash is unknown until
    the loader parses the pinned generation. Raise InvalidInputError naming the field
    for a malformed message or one that announces anything but a finished upload.
    """
    event = _attribute(attributes, "eventType")
    if event != _FINALIZE:
        raise InvalidInputError(
            f"is {event!r}: only {_FINALIZE} (a finished upload) names an object to load",
            location="eventType",
        )
    bucket = _attribute(attributes, "bucketId")
    if not _BUCKET_NAME.match(bucket):
        raise InvalidInputError(f"{bucket!r} is not a bucket name", location="bucketId")
    name = _attribute(attributes, "objectId")
    _check_object_name(name, "objectId")
    generation = _generation(_attribute(attributes, "objectGeneration"), "objectGeneration")
    if data:
        resource = _resource(data)
        for key, want in (("bucket", bucket), ("name", name), ("generation", str(generation))):
            got = resource.get(key)
            if got is None:
                raise InvalidInputError(
                    "is missing from the object resource", location=f"data.{key}"
                )
            if str(got) != want:
                raise InvalidInputError(
                    f"is {got!r}, but the message's attributes say {want!r}",
                    location=f"data.{key}",
                )
    return LandedObject(name=name, uri=f"gs://{bucket}/{name}", generation=generation)


def _attribute(attributes: Mapping[str, str], key: str) -> str:
    value = attributes.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError("is missing from the notification's attributes", location=key)
    return value


def _generation(text: str, field: str) -> int:
    # int() would also take " 7", "+7" and "7_0"; a generation is digits only.
    if not _GENERATION.match(text) or int(text) == 0:
        raise InvalidInputError(f"{text!r} is not a generation", location=field)
    return int(text)


def _resource(data: bytes) -> dict[str, Any]:
    try:
        resource = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError("is not the object resource as JSON", location="data") from exc
    if not isinstance(resource, dict):
        raise InvalidInputError("is not a JSON object", location="data")
    return resource


def _check_object_name(name: str, field: str) -> None:
    """What GCS itself refuses, so no request is made for a name that cannot exist."""
    if (
        not name
        or len(name.encode("utf-8")) > 1024
        or name in (".", "..")
        or any(c in name for c in "\r\n\0")
    ):
        raise InvalidInputError(f"{name!r} is not a Cloud Storage object name", location=field)


# -- files ---------------------------------------------------------------------------


def _file_digests(path: Path) -> tuple[str, str]:
    """SHA-256 (the content's identity) and base64 MD5 (what GCS reports), in one read."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), base64.b64encode(md5.digest()).decode("ascii")


def _local_name(name: str) -> str:
    # The object's own name where it is one safe segment, so the reader names the file
    # as it would the local one; anything else never becomes a path.
    return name if _SAFE_NAME.match(name) else "object"


@contextmanager
def _open_private(path: Path) -> Iterator[IO[bytes]]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    with os.fdopen(fd, "wb") as fh:
        yield fh


class _HashingSink:
    """The download's stream: hashes what it writes, so the copy is never read back."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # The client rewinds to 0 only when GCS sends a gzip-encoded object again whole
        # (decompressive transcoding); start both the file and the hash over.
        if (offset, whence) != (0, os.SEEK_SET):
            raise OSError(
                f"the download may only rewind to the start, not seek({offset}, {whence})"
            )
        self._fh.seek(0)
        self._fh.truncate()
        self._digest = hashlib.sha256()
        self.size = 0
        return 0

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _owner() -> str:
    """This process, as scratch directories name it: its pid and its pid namespace.

    A pid means something only inside its namespace; containers sharing a temporary
    directory must not take each other's live copies for dead ones.
    """
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0  # no /proc (macOS): one namespace
    return f"{namespace}-{os.getpid()}"


def sweep_dead_copies(parent: Path) -> int:
    """Delete the scratch directories under ``parent`` whose process is gone; return how many.

    Only this user's directories of this pid namespace are considered; a live process's
    (this one's included) are never touched.
    """
    namespace = _owner().split("-", 1)[0]
    removed = 0
    for entry in parent.glob(f"{_SCRATCH_PREFIX}*"):
        owner = _SCRATCH_OWNER.match(entry.name)
        if owner is None or owner["ns"] != namespace or pid_alive(int(owner["pid"])):
            continue
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue  # another sweeper took it
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue  # not one of ours (a symlink, another user's): leave it
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _remove_scratch(scratch: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        shutil.rmtree(scratch, ignore_errors=True)
