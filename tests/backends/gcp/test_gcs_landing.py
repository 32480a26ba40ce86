"""The GCS landing zone: against fake-gcs-server (``emulators``), and at the client
boundary where an emulator cannot show it (timeouts and retries passed, the scratch copies'
lifetime, the notification parser)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.storage.exceptions import InvalidResponse

from app.backends import Backends
from app.backends.gcp import gcs_landing
from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.gcs_landing import (
    GcsLandingZone,
    landed_from_notification,
    sweep_dead_copies,
    transient,
)
from app.core.config import CallPolicyConfig, GcsLandingConfig, RuntimeConfig
from app.core.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from app.core.ingest.reader import read_transactions
from app.core.records import LandedObject

if TYPE_CHECKING:
    from tests.support.fake_gcs import FakeGcs, NotifyingGcs

# Registered as a plugin, not imported: its fixtures, with pytest's assertion rewriting.
pytest_plugins = ["tests.support.fake_gcs"]

POLICY = CallPolicy(timeout=7.5, deadline=20.0, initial=0.01, maximum=0.05)
GENERATION = 1712345678901234


def _zone(fake_gcs: FakeGcs, bucket: str, tmp_path: Path) -> GcsLandingZone:
    return GcsLandingZone(
        bucket, policy=POLICY, client=fake_gcs.client, scratch_dir=tmp_path / "scratch"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copies_left(tmp_path: Path) -> list[Path]:
    """What the zone's scratch directory still holds (each copy sits in a directory)."""
    (scratch,) = (tmp_path / "scratch").iterdir()
    return sorted(scratch.iterdir())


# -- against fake-gcs-server ---------------------------------------------------------


@pytest.mark.emulators
def test_land_then_local_path_round_trips_bytes_and_hash(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    bucket = fake_gcs.new_bucket()
    zone = _zone(fake_gcs, bucket, tmp_path)

    landed = zone.land(small_csv, name="day1.csv")

    assert zone.location == f"gs://{bucket}"
    assert landed.uri == f"gs://{bucket}/day1.csv"
    assert landed.content_hash == _sha256(small_csv)
    live = fake_gcs.client.bucket(bucket).get_blob("day1.csv")
    assert landed.generation == live.generation > 0
    copy = zone.local_path(landed)
    assert copy.read_bytes() == small_csv.read_bytes()
    assert copy.name == "day1.csv"
    assert zone.copy_of(copy).landed == landed


@pytest.mark.emulators
@pytest.mark.emulators
def test_local_copy_is_deleted_when_its_block_ends(
    fake_gcs: FakeGcs, small_csv: Path, tmp_path: Path
) -> None:
    zone = _zone(fake_gcs, fake_gcs.new_bucket(), tmp_path)
    landed = zone.land(small_csv, name="day1.csv")

    with zone.local_copy(landed) as copy:
        assert copy.path.read_bytes() == small_csv.read_bytes()
        assert copy.landed.content_hash == landed.content_hash
        assert copy.landed.generation == landed.generation
    assert not copy.path.exists()


def test_local_path_pinned_generation_returns_old_bytes_after_overwrite(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    bucket = fake_gcs.new_bucket(versioning=True)
    zone = _zone(fake_gcs, bucket, tmp_path)
    first = zone.land(small_csv, name="day1.csv")
    # Landing never replaces; an operator with delete rights can.
    newer = fake_gcs.client.bucket(bucket).blob("day1.csv")
    newer.upload_from_string(b"Time,V1\n1,2\n")
    assert newer.generation != first.generation

    assert zone.local_path(first).read_bytes() == small_csv.read_bytes()


@pytest.mark.emulators
def test_local_path_live_generation_records_the_generation_read(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    bucket = fake_gcs.new_bucket()
    zone = _zone(fake_gcs, bucket, tmp_path)
    first = zone.land(small_csv, name="day1.csv")
    newer = fake_gcs.client.bucket(bucket).blob("day1.csv")
    newer.upload_from_string(b"Time,V1\n1,2\n")

    copy = zone.download(LandedObject("day1.csv", first.uri))

    assert copy.path.read_bytes() == b"Time,V1\n1,2\n"
    assert copy.landed.generation == newer.generation
    assert copy.landed.content_hash == hashlib.sha256(b"Time,V1\n1,2\n").hexdigest()


@pytest.mark.emulators
@pytest.mark.parametrize("how", ["deleted", "replaced_without_versioning"])
def test_local_path_generation_gone_raises_not_found(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path, how: str
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    zone = _zone(fake_gcs, bucket, tmp_path)
    landed = zone.land(small_csv, name="day1.csv")
    blob = fake_gcs.client.bucket(bucket).blob("day1.csv")
    if how == "deleted":
        blob.delete()
    else:
        blob.upload_from_string(b"other bytes")

    with pytest.raises(NotFoundError, match=f"generation {landed.generation} does not exist"):
        zone.local_path(landed)
    assert _copies_left(tmp_path) == []  # not even an empty one


@pytest.mark.emulators
def test_local_path_live_read_of_an_absent_object_raises_not_found(
    fake_gcs: FakeGcs, tmp_path: Path
) -> None:
    bucket = fake_gcs.new_bucket()
    zone = _zone(fake_gcs, bucket, tmp_path)

    with pytest.raises(NotFoundError, match=r"absent.csv \(live generation\) does not exist$"):
        zone.local_path(LandedObject("absent.csv", f"gs://{bucket}/absent.csv"))


@pytest.mark.emulators
def test_local_path_hash_mismatch_raises_conflict_and_keeps_no_copy(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    bucket = fake_gcs.new_bucket()
    zone = _zone(fake_gcs, bucket, tmp_path)
    landed = zone.land(small_csv, name="day1.csv")

    with pytest.raises(ConflictError, match="not the content announced"):
        zone.local_path(dataclasses.replace(landed, content_hash="0" * 64))
    assert _copies_left(tmp_path) == []


@pytest.mark.emulators
@pytest.mark.parametrize("name", ["../escape.csv", "dir/day1.csv", ".hidden.csv", "a" * 202])
def test_land_unsafe_name_raises_invalid_input(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path, name: str
) -> None:
    bucket = fake_gcs.new_bucket()
    zone = _zone(fake_gcs, bucket, tmp_path)

    with pytest.raises(InvalidInputError, match="object name may hold only"):
        zone.land(small_csv, name=name)
    assert list(fake_gcs.client.list_blobs(bucket)) == []


@pytest.mark.emulators
def test_land_missing_source_raises_invalid_input(fake_gcs: FakeGcs, tmp_path: Path) -> None:
    zone = _zone(fake_gcs, fake_gcs.new_bucket(), tmp_path)

    with pytest.raises(InvalidInputError, match="no such file"):
        zone.land(tmp_path / "absent.csv")


@pytest.mark.emulators
def test_land_taken_name_with_other_bytes_raises_conflict(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path, kaggle_csv: Path
) -> None:
    bucket = fake_gcs.new_bucket()
    zone = _zone(fake_gcs, bucket, tmp_path)
    first = zone.land(small_csv, name="day1.csv")

    with pytest.raises(ConflictError, match="already holds other content"):
        zone.land(kaggle_csv, name="day1.csv")
    live = fake_gcs.client.bucket(bucket).get_blob("day1.csv")
    assert live.generation == first.generation


@pytest.mark.emulators
def test_land_same_bytes_again_returns_the_existing_object(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    zone = _zone(fake_gcs, fake_gcs.new_bucket(), tmp_path)
    first = zone.land(small_csv, name="day1.csv")

    assert zone.land(small_csv, name="day1.csv") == first


@pytest.mark.emulators
def test_local_path_copy_is_readable_by_its_owner_only(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    zone = _zone(fake_gcs, fake_gcs.new_bucket(), tmp_path)
    copy = zone.local_path(zone.land(small_csv, name="day1.csv"))

    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(copy.parent.parent.stat().st_mode) == 0o700


@pytest.mark.emulators
def test_reader_on_downloaded_copy_names_the_same_location_as_on_the_local_file(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    lines = small_csv.read_text().splitlines()
    fields = lines[6].split(",")
    fields[2] = "x1"  # line 7, column 3 (V2): not a number
    lines[6] = ",".join(fields)
    broken = tmp_path / "local" / "broken.csv"
    broken.parent.mkdir()
    broken.write_text("\n".join(lines) + "\n")
    zone = _zone(fake_gcs, fake_gcs.new_bucket(), tmp_path)
    copy = zone.local_path(zone.land(broken))

    with pytest.raises(InvalidInputError) as local:
        read_transactions(broken)
    with pytest.raises(InvalidInputError) as downloaded:
        read_transactions(copy)
    assert local.value.location == "broken.csv:7:3"
    assert str(downloaded.value) == str(local.value)


@pytest.mark.emulators
def test_backends_build_the_gcs_landing_zone_from_its_config_section(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path
) -> None:
    bucket = fake_gcs.new_bucket()
    cfg = RuntimeConfig.local(tmp_path / "home").model_copy(
        update={"landing": GcsLandingConfig(bucket=bucket, subscription="landing-dag")}
    )
    zone = Backends(cfg).landing

    landed = zone.land(small_csv, name="day1.csv")

    assert isinstance(zone, GcsLandingZone) and zone.location == f"gs://{bucket}"
    assert zone.local_path(landed).read_bytes() == small_csv.read_bytes()


class _FlakySession(requests.Session):
    """The HTTP layer under a real client: records each request's timeout, and fails the
    first request of each kind (method and path) as a flaky network or GCS would."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure = failure
        self.requests: list[tuple[str, str, Any]] = []
        self._failed: set[tuple[str, str]] = set()

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        method, url = str(method), str(url)
        kind = (method, urlsplit(url).path)
        self.requests.append((method, kind[1], kwargs.get("timeout")))
        if kind in self._failed:
            return super().request(method, url, *args, **kwargs)
        self._failed.add(kind)
        if self.failure == "connection reset":
            raise requests.exceptions.ConnectionError("injected: connection reset by peer")
        response = requests.Response()
        response.status_code = 503
        response._content = b'{"error": {"code": 503, "message": "injected: backend error"}}'
        response._content_consumed = True
        response.headers["Content-Type"] = "application/json"
        response.url = url
        response.request = requests.Request(method, url).prepare()
        return response


@pytest.mark.emulators
@pytest.mark.parametrize("failure", ["connection reset", "503"])
def test_storage_calls_carry_the_timeout_and_retry_transient_failures(
    fake_gcs: FakeGcs, tmp_path: Path, small_csv: Path, failure: str
) -> None:
    from google.cloud import storage

    bucket = fake_gcs.new_bucket()
    session = _FlakySession(failure)
    client = storage.Client(project=None, _http=session)
    zone = GcsLandingZone(bucket, policy=POLICY, client=client, scratch_dir=tmp_path / "s")

    landed = zone.land(small_csv, name="day1.csv")  # upload
    assert zone.land(small_csv, name="day1.csv") == landed  # upload (412), then get_blob
    copy = zone.local_path(landed)  # download

    assert copy.read_bytes() == small_csv.read_bytes()
    # google-cloud-storage >= 3.17 also reads the bucket's metadata once, from a thread of
    # its own, for its tracing attributes; the zone never asks for the bucket.
    ours = [(p, t) for _, p, t in session.requests if p != f"/storage/v1/b/{bucket}"]
    upload = f"/upload/storage/v1/b/{bucket}/o"
    metadata = f"/storage/v1/b/{bucket}/o/day1.csv"
    download = f"/download/storage/v1/b/{bucket}/o/day1.csv"
    # Each kind failed once and was retried: the first upload, the metadata read, the download.
    assert [path for path, _ in ours] == [
        upload,
        upload,
        upload,
        metadata,
        metadata,
        download,
        download,
    ]
    assert {timeout for _, timeout in ours} == {POLICY.timeout}


@pytest.mark.emulators
def test_finalize_notification_through_pubsub_names_the_generation_landed(
    notifying_gcs: NotifyingGcs, tmp_path: Path, small_csv: Path
) -> None:
    zone = GcsLandingZone(
        notifying_gcs.bucket, policy=POLICY, client=notifying_gcs.client, scratch_dir=tmp_path
    )

    landed = zone.land(small_csv, name="day1.csv")
    message = notifying_gcs.pull_one()
    notified = landed_from_notification(dict(message.attributes), message.data)

    assert notified == dataclasses.replace(landed, content_hash=None)
    assert zone.download(notified).landed == landed


# -- at the client boundary ------------------------------------------------------------


class _Blob:
    def __init__(self, bucket: _Bucket, name: str, generation: int | None = None) -> None:
        self.bucket, self.name, self.generation = bucket, name, generation
        self.md5_hash: str | None = None

    def upload_from_filename(self, filename: str, **kwargs: Any) -> None:
        self.bucket.calls.append(("upload_from_filename", kwargs))
        if self.name in self.bucket.objects:
            raise gexc.PreconditionFailed("ifGenerationMatch=0, but the object exists")
        data = Path(filename).read_bytes()
        self.bucket.objects[self.name] = (GENERATION, data)
        self.generation, self.md5_hash = GENERATION, _md5(data)

    def download_to_file(self, file_obj: Any, **kwargs: Any) -> None:
        self.bucket.calls.append(("download_to_file", kwargs))
        generation, data = self.bucket.objects[self.name]
        file_obj.write(data)
        self.generation = generation


class _Bucket:
    """Records every call made on it or its blobs, with its keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.objects: dict[str, tuple[int, bytes]] = {}

    def blob(self, name: str, generation: int | None = None) -> _Blob:
        return _Blob(self, name, generation)

    def get_blob(self, name: str, **kwargs: Any) -> _Blob | None:
        self.calls.append(("get_blob", kwargs))
        generation, data = self.objects[name]
        blob = _Blob(self, name, generation)
        blob.md5_hash = _md5(data)
        return blob


class _Client:
    def __init__(self) -> None:
        self.buckets: dict[str, _Bucket] = {}

    def bucket(self, name: str) -> _Bucket:
        return self.buckets.setdefault(name, _Bucket())


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[GcsLandingZone, _Bucket]]:
    client = _Client()
    zone = GcsLandingZone("landing", policy=POLICY, client=client, scratch_dir=tmp_path / "s")
    yield zone, client.bucket("landing")
    zone.close()


def test_storage_calls_each_get_the_policy_timeout_and_retry(
    recorded: tuple[GcsLandingZone, _Bucket], small_csv: Path
) -> None:
    zone, bucket = recorded

    landed = zone.land(small_csv, name="day1.csv")
    zone.land(small_csv, name="day1.csv")  # taken: the metadata read decides
    zone.local_path(landed)

    assert [method for method, _ in bucket.calls] == [
        "upload_from_filename",
        "upload_from_filename",
        "get_blob",
        "download_to_file",
    ]
    for method, kwargs in bucket.calls:
        assert kwargs["timeout"] == POLICY.timeout, method
        retry = kwargs["retry"]
        assert isinstance(retry, gretry.Retry) and retry.timeout == POLICY.deadline, method
    assert bucket.calls[0][1]["if_generation_match"] == 0  # create-only: safe to retry


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ConnectionError("reset"), True),
        (requests.exceptions.ChunkedEncodingError("cut"), True),
        (http.client.IncompleteRead(b""), True),
        (gexc.ServiceUnavailable("down"), True),
        (gexc.from_http_status(408, "slow"), True),
        (gexc.NotFound("gone"), False),
        (gexc.PreconditionFailed("exists"), False),
        (ValueError("bug"), False),
    ],
)
def test_transient_classifies_storage_errors(exc: BaseException, expected: bool) -> None:
    assert transient(exc) is expected


@pytest.mark.parametrize(("status", "expected"), [(503, True), (429, True), (404, False)])
def test_transient_raw_media_response_by_status(status: int, expected: bool) -> None:
    response = requests.Response()
    response.status_code = status
    assert transient(InvalidResponse(response, "media request failed")) is expected


def test_from_config_takes_the_gcp_call_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client makes no request when built; the emulator variable only spares it a
    # credentials lookup.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    calls = CallPolicyConfig(timeout_seconds=3.0, deadline_seconds=9.0)
    cfg = RuntimeConfig.local(tmp_path).model_copy(
        update={
            "landing": GcsLandingConfig(bucket="landing-b", subscription="s"),
            "gcp_calls": calls,
        }
    )

    zone = GcsLandingZone.from_config(cfg.landing, Backends(cfg))

    assert zone.location == "gs://landing-b"
    assert zone._policy == CallPolicy.from_config(calls)


def test_local_path_object_of_another_bucket_raises_invalid_input(
    recorded: tuple[GcsLandingZone, _Bucket],
) -> None:
    zone, bucket = recorded

    with pytest.raises(InvalidInputError, match="not in gs://landing"):
        zone.local_path(LandedObject("day1.csv", "gs://elsewhere/day1.csv", generation=1))
    assert bucket.calls == []


def test_release_deletes_the_copy_and_forgets_it(
    recorded: tuple[GcsLandingZone, _Bucket], small_csv: Path
) -> None:
    zone, _ = recorded
    copy = zone.local_path(zone.land(small_csv, name="day1.csv"))

    zone.release(copy)

    assert not copy.exists() and not copy.parent.exists()
    with pytest.raises(NotFoundError):
        zone.copy_of(copy)


def test_zone_collected_deletes_its_scratch(tmp_path: Path, small_csv: Path) -> None:
    zone = GcsLandingZone("landing", policy=POLICY, client=_Client(), scratch_dir=tmp_path)
    copy = zone.local_path(zone.land(small_csv, name="day1.csv"))
    scratch = copy.parent.parent

    del zone  # the last reference: the finalizer runs now

    assert not scratch.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_zone_collected_in_a_forked_child_keeps_the_parents_copies(
    tmp_path: Path, small_csv: Path
) -> None:
    zone: GcsLandingZone | None = GcsLandingZone(
        "landing",
        policy=POLICY,
        client=_Client(),
        scratch_dir=tmp_path,
    )
    assert zone is not None
    copy = zone.local_path(zone.land(small_csv, name="day1.csv"))

    pid = os.fork()
    if pid == 0:
        try:
            zone = None  # the child's last reference: its finalizer runs, in the child
        finally:
            os._exit(0)
    os.waitpid(pid, 0)

    assert copy.read_bytes() == small_csv.read_bytes()


def test_sweep_dead_copies_removes_only_dead_owners_of_this_namespace(tmp_path: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    namespace, me = gcs_landing._owner().split("-")
    dead = tmp_path / f"fraud-mlops-landing-{namespace}-{ended.pid}-abc"
    mine = tmp_path / f"fraud-mlops-landing-{namespace}-{me}-def"
    other_namespace = tmp_path / f"fraud-mlops-landing-{int(namespace) + 1}-{ended.pid}-ghi"
    unrelated = tmp_path / "something-else"
    for directory in (dead, mine, other_namespace, unrelated):
        (directory / "g1-x").mkdir(parents=True)
        (directory / "g1-x" / "day1.csv").write_text("card numbers")

    assert sweep_dead_copies(tmp_path) == 1

    assert not dead.exists()
    assert mine.exists() and other_namespace.exists() and unrelated.exists()


# -- the notification ------------------------------------------------------------------

ATTRIBUTES = {
    "bucketId": "fraud-mlops-dev-landing",
    "objectId": "day1.csv",
    "objectGeneration": str(GENERATION),
    "eventType": "OBJECT_FINALIZE",
    "payloadFormat": "JSON_API_V1",
    "notificationConfig": "projects/_/buckets/fraud-mlops-dev-landing/notificationConfigs/1",
}
RESOURCE = {
    "kind": "storage#object",
    "id": f"fraud-mlops-dev-landing/day1.csv/{GENERATION}",
    "name": "day1.csv",
    "bucket": "fraud-mlops-dev-landing",
    "generation": str(GENERATION),
    "size": "1234",
}


def _data(**changes: Any) -> bytes:
    resource = {**RESOURCE, **changes}
    return json.dumps({k: v for k, v in resource.items() if v is not None}).encode()


def test_landed_from_notification_finalize_names_the_pinned_generation() -> None:
    landed = landed_from_notification(ATTRIBUTES, _data())

    assert landed == LandedObject(
        name="day1.csv",
        uri="gs://fraud-mlops-dev-landing/day1.csv",
        content_hash=None,
        generation=GENERATION,
    )


def test_landed_from_notification_without_payload_takes_the_attributes() -> None:
    assert landed_from_notification(ATTRIBUTES, b"").generation == GENERATION


@pytest.mark.parametrize("field", ["bucketId", "objectId", "objectGeneration", "eventType"])
def test_landed_from_notification_missing_attribute_raises_naming_it(field: str) -> None:
    attributes = {k: v for k, v in ATTRIBUTES.items() if k != field}

    with pytest.raises(InvalidInputError, match="is missing") as raised:
        landed_from_notification(attributes, _data())
    assert raised.value.location == field


@pytest.mark.parametrize("event", ["OBJECT_DELETE", "OBJECT_ARCHIVE", "OBJECT_METADATA_UPDATE"])
def test_landed_from_notification_other_event_type_raises_naming_it(event: str) -> None:
    with pytest.raises(InvalidInputError, match=event) as raised:
        landed_from_notification({**ATTRIBUTES, "eventType": event}, _data())
    assert raised.value.location == "eventType"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("objectGeneration", "0"),
        ("objectGeneration", "+12"),
        ("objectGeneration", "12 "),
        ("objectGeneration", "latest"),
        ("objectId", "day1.csv\n"),
        ("objectId", ".."),
        ("bucketId", "Not/A-Bucket"),
    ],
)
def test_landed_from_notification_malformed_attribute_raises_naming_it(
    field: str, value: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        landed_from_notification({**ATTRIBUTES, field: value}, b"")
    assert raised.value.location == field


@pytest.mark.parametrize(
    ("data", "location"),
    [
        (b"{not json", "data"),
        (b"\xff\xfe", "data"),
        (b"[1, 2]", "data"),
        (_data(name="day2.csv"), "data.name"),
        (_data(bucket="elsewhere"), "data.bucket"),
        (_data(generation="1"), "data.generation"),
        (_data(generation=None), "data.generation"),
    ],
)
def test_landed_from_notification_payload_disagreeing_raises_naming_the_field(
    data: bytes, location: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        landed_from_notification(ATTRIBUTES, data)
    assert raised.value.location == location


def test_landed_from_notification_object_name_with_a_prefix_is_kept_whole() -> None:
    # Writers may upload under a prefix; the object is read by its full name, and its
    # local copy is never named by it.
    landed = landed_from_notification({**ATTRIBUTES, "objectId": "2024/day1.csv"}, b"")

    assert landed.uri == "gs://fraud-mlops-dev-landing/2024/day1.csv"


def test_backend_unavailable_is_what_a_copy_that_cannot_be_written_raises(
    recorded: tuple[GcsLandingZone, _Bucket], small_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone, _ = recorded
    landed = zone.land(small_csv, name="day1.csv")

    def full_disk(self: Any, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gcs_landing._HashingSink, "write", full_disk)
    with pytest.raises(BackendUnavailableError, match="No space left"):
        zone.local_path(landed)
