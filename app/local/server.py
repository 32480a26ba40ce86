"""Start and stop the real prediction function under functions-framework, on loopback."""

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    return [
        str(Path(sys.executable).parent / "functions-framework"),
        "--source",
        str(FUNCTION_SOURCE),
        "--target",
        "predict",
        "--host",
        host,
        "--port",
        str(port),
    ]


class FunctionServer:
    """``with FunctionServer(cfg) as url:`` serves the function on loopback until exit."""

    def __init__(self, cfg: RuntimeConfig, port: int | None = None, log_path: Path | None = None):
        self.cfg = cfg
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        env = {**os.environ, **config_env(self.cfg)}
        out = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            command(self.port), env=env, stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BackendUnavailableError(
                    f"function server exited with {self._proc.returncode}"
                )
            try:
                requests.get(self.url, timeout=1)
                return self.url
            except requests.ConnectionError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise BackendUnavailableError("function server did not start within 60 s")

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
