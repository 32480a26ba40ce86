"""bqemulator on a loopback port for the session: started once, always stopped.

The emulator lives in a venv of its own (``make emulators`` builds ``.tools/emulators``
from ``tools/emulators/requirements.txt``), named by ``FRAUD_MLOPS_EMULATORS``; without it
the tests that use :func:`bqemulator` are skipped, saying so. Before starting, the
extension its DuckDB needs is installed from the pinned wheel
(``tools/emulators/prepare.py``), so no network is needed.

Import the fixture into a test module (``from tests.support.bqemulator import bqemulator``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EMULATORS_ENV = "FRAUD_MLOPS_EMULATORS"
PROJECT = "fraud-mlops-emu"
_REPO = Path(__file__).resolve().parents[2]
_PREPARE = _REPO / "tools" / "emulators" / "prepare.py"
_START_SECONDS = 60.0
_STOP_SECONDS = 10.0


@dataclass(frozen=True)
class BqEmulator:
    """Where the running emulator answers."""

    endpoint: str  # http://127.0.0.1:<port>
    project: str
    log: Path

    def client(self, location: str = "US") -> Any:
        """A BigQuery client for the emulator: its endpoint, and no credentials to find."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )


def emulators_dir() -> Path:
    root = os.environ.get(EMULATORS_ENV)
    if not root:
        pytest.skip(f"{EMULATORS_ENV} is not set: run `make emulators` and the tests through make")
    path = Path(root)
    if not (path / "bin" / "bqemulator").is_file():
        pytest.skip(f"{EMULATORS_ENV}={root} has no bin/bqemulator: run `make emulators`")
    return path


def _prepare(venv: Path) -> Path:
    """The HOME under which the emulators' DuckDB finds the spatial extension."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(_PREPARE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{_PREPARE.name} failed: {done.stderr.strip()[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _listening_port(log: Path, process: subprocess.Popen[bytes], deadline: float) -> int:
    """The REST port the emulator chose (it is started on port 0), read from its log."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bqemulator exited with {process.returncode}:\n{_tail(log)}")
        for line in log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # uvicorn's own lines are not JSON
            if isinstance(event, dict) and event.get("event") == "rest.listen":
                return int(event["port"])
        time.sleep(0.1)
    raise RuntimeError(f"bqemulator did not listen within {_START_SECONDS:.0f} s:\n{_tail(log)}")


def _wait_ready(endpoint: str, deadline: float, log: Path) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoint}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"bqemulator was not ready within {_START_SECONDS:.0f} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # Its own session: the signal reaches whatever it started, and nothing else.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=_STOP_SECONDS)


@pytest.fixture(scope="session")
def bqemulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BqEmulator]:
    venv = emulators_dir()
    home = _prepare(venv)
    log = tmp_path_factory.mktemp("bqemulator") / "emulator.log"
    command = [
        str(venv / "bin" / "bqemulator"),
        "start",
        "--ephemeral",
        "--rest-host",
        "127.0.0.1",
        "--rest-port",
        "0",
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        "0",
        "--project",
        PROJECT,
        "--no-admin",
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(home)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + _START_SECONDS
        port = _listening_port(log, process, deadline)
        endpoint = f"http://127.0.0.1:{port}"
        _wait_ready(endpoint, deadline, log)
        yield BqEmulator(endpoint=endpoint, project=PROJECT, log=log)
    finally:
        _stop(process)
