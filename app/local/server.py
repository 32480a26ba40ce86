"""Start and stop the real prediction function under functions-framework, on loopback.

The server runs with the same gunicorn shape the gen-2 function gets on Cloud Run
(``WORKERS`` x ``THREADS``, read by functions-framework's GunicornApplication), so a
local measurement says something about the deployed one. The numbers come from
docs/serving.md; ``tests/infra`` checks the stack sets the same ones.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests

from app.core.config import RuntimeConfig, config_env
from app.core.errors import BackendUnavailableError

FUNCTION_SOURCE = Path(__file__).resolve().parent.parent / "function" / "main.py"

# Measured on 2 cores (docs/serving.md): one process tops out near one core, since
# scoring holds the GIL, so one worker per core; threads let each overlap its reads
# and keep p50 flat as the rate climbs. stacks/config.py sets the same on Cloud Run.
WORKERS = 2
THREADS = 8
READY_PATH = "/healthz"
# Statuses that mean "this build has no readiness route" (the function answers GET
# with 405 until it has one): then any response means the server is up.
_NO_READY_ROUTE = frozenset({404, 405})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(
    port: int, host: str = "127.0.0.1", *, source: Path = FUNCTION_SOURCE, target: str = "predict"
) -> list[str]:
    return [
        str(Path(sys.executable).parent / "functions-framework"),
        "--source",
        str(source),
        "--target",
        target,
        "--host",
        host,
        "--port",
        str(port),
    ]


def serving_env(workers: int = WORKERS, threads: int = THREADS) -> dict[str, str]:
    """The variables functions-framework 3.x reads to size gunicorn (same on Cloud Run)."""
    return {"WORKERS": str(workers), "THREADS": str(threads)}


class FunctionServer:
    """``with FunctionServer(cfg) as url:`` serves the function on loopback until exit.

    Entering returns once ``GET /healthz`` answers 200 on several fresh connections in
    a row: each gunicorn worker loads the model itself, and a new connection lands on
    any of them, so startup includes every worker's warm-up. A build without the route
    (404/405) is taken as up on its first answer; one that keeps answering "not ready"
    for ``unready_grace`` seconds is returned as it is (``ready`` False), since a
    function whose store is down is still a server that answers 503.
    """

    def __init__(
        self,
        cfg: RuntimeConfig,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        workers: int = WORKERS,
        threads: int = THREADS,
        source: Path = FUNCTION_SOURCE,
        target: str = "predict",
        ready_timeout: float = 60.0,
        unready_grace: float = 10.0,
    ):
        self.cfg = cfg
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.workers = workers
        self.threads = threads
        self.source = source
        self.target = target
        self.ready_timeout = ready_timeout
        self.unready_grace = unready_grace
        # Seconds from spawn to ready; whether the build has the readiness route; and
        # whether it said ready (False: it answered, but only "not ready", for the grace).
        self.ready_seconds: float | None = None
        self.ready_route = False
        self.ready = False
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> str:
        env = {**os.environ, **config_env(self.cfg), **serving_env(self.workers, self.threads)}
        out = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        started = time.monotonic()
        self._proc = subprocess.Popen(
            command(self.port, source=self.source, target=self.target),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(started)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.ready_seconds = round(time.monotonic() - started, 3)
        return self.url

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.ready_timeout
        # Enough consecutive 200s that every worker has most likely answered one.
        wanted = 4 * self.workers
        streak = 0
        unready_since: float | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BackendUnavailableError(
                    f"function server exited with {self._proc.returncode}"
                )
            try:
                # A new connection each time (no Session), so the kernel can hand it
                # to any worker.
                status = requests.get(self.url + READY_PATH, timeout=5).status_code
            except (requests.ConnectionError, requests.Timeout):
                streak = 0
                time.sleep(0.1)
                continue
            if status in _NO_READY_ROUTE:
                self.ready_route = False
                self.ready = True
                return
            self.ready_route = True
            if status == 200:
                streak += 1
                if streak >= wanted:
                    self.ready = True
                    return
                continue
            # 503 while warming: ask again shortly. One that lasts means a backend is
            # down: the server is up and answers so, which a caller may want to see.
            streak = 0
            now = time.monotonic()
            unready_since = unready_since or now
            if now - unready_since > self.unready_grace:
                return
            time.sleep(0.05)
        raise BackendUnavailableError(
            f"function server was not ready within {self.ready_timeout:.0f} s"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
