"""The serving container's HTTP server, on Vertex AI's custom-container contract.

Vertex AI starts the container with ``AIP_HTTP_PORT`` (default 8080), ``AIP_HEALTH_ROUTE``,
``AIP_PREDICT_ROUTE`` and ``AIP_STORAGE_URI`` (the version's artifact copy). The server
listens at once and loads the model in the background: health is 503 until the model is
loaded, then 200, so Vertex routes no traffic to a container that cannot score. A model
that cannot be loaded ends the process (exit 1) with one log line, and Vertex reports the
deployment failed instead of waiting out its health-check deadline.

``POST {"instances": [[f_1, ..., f_n], ...]}`` (features in ``MODEL_FEATURES`` order,
null for a missing one) -> ``{"predictions": [p_1, ...]}``, every instance in one call to
:meth:`FraudModel.predict`. Every error is JSON, ``{"error": {"code", "status", "message",
"field"?}}``: bad input is a 4xx naming the field (``instances[i][j]``), never a 5xx, an
HTML page or a stack trace.

Stdlib ``ThreadingHTTPServer``: the work per request is one LightGBM call, which releases
the GIL, so a thread per connection with HTTP/1.1 keep-alive is all a replica needs, and
the image carries no web framework.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import FraudMlopsError
from app.core.model.artifact import FraudModel, load_model
from app.core.schema import MODEL_FEATURES
from app.serving.artifact_source import fetch_artifact

log = logging.getLogger("fraud_mlops.serving")

DEFAULT_PORT = 8080
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PREDICT_ROUTE = "/predict"
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a full batch of MAX_INSTANCES rows fits with room to spare
MAX_INSTANCES = 1000
N_FEATURES = len(MODEL_FEATURES)
# A client that stops sending mid-request frees its thread after this long.
SOCKET_TIMEOUT_SECONDS = 30.0
# A refused body up to this size is read and dropped, so the client gets its answer on a
# connection that stays open; a larger one is not worth reading, and the connection closes.
DRAIN_LIMIT_BYTES = 8 << 20
RETRY_AFTER_SECONDS = 5
_JSON = "application/json"
_BODY_KEYS = frozenset({"instances", "parameters"})  # "parameters" is Vertex's; unused here
_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "DEADLINE_EXCEEDED",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    505: "HTTP_VERSION_NOT_SUPPORTED",
}


class RequestError(Exception):
    """A request the server refuses: its status, a message for the caller, the field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Routes:
    health: str = DEFAULT_HEALTH_ROUTE
    predict: str = DEFAULT_PREDICT_ROUTE


# --- the request body ---------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    # json.loads takes NaN, Infinity and -Infinity by default; no model input is either.
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as exc:  # [[[[...]]]]: nested deeper than the parser goes
        raise RequestError(400, "body is nested too deeply", "body") from exc
    except ValueError as exc:  # includes UnicodeDecodeError and over-long integer literals
        raise RequestError(400, f"body is not valid JSON: {exc}", "body") from exc


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), "not a number")


def instances_matrix(body: Any) -> np.ndarray:
    """The request's instances as an ``n x N_FEATURES`` float64 matrix (null -> NaN).

    Strict: a JSON object with an ``instances`` list of 1..MAX_INSTANCES lists of exactly
    ``N_FEATURES`` numbers or nulls. A boolean is not a number, nor is a string holding
    one; a number beyond float range is refused, not turned into infinity.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "body must be a JSON object with an 'instances' list", "body")
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        raise RequestError(400, f"unknown fields: {', '.join(map(repr, unknown))}", unknown[0])
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, "'instances' must be a non-empty list of instances", "instances")
    if len(instances) > MAX_INSTANCES:
        raise RequestError(
            400, f"{len(instances)} instances; at most {MAX_INSTANCES} per request", "instances"
        )
    for i, row in enumerate(instances):
        if not isinstance(row, list):
            raise RequestError(
                400,
                f"an instance is a list of {N_FEATURES} numbers, not {_type_name(row)}",
                f"instances[{i}]",
            )
        if len(row) != N_FEATURES:
            # Name the first slot that is missing, or the first one too many.
            j = min(len(row), N_FEATURES)
            what = "missing" if len(row) < N_FEATURES else "one value too many"
            raise RequestError(
                400,
                f"{what}: an instance has {N_FEATURES} values in MODEL_FEATURES order, "
                f"this one has {len(row)}",
                f"instances[{i}][{j}]",
            )
        for j, value in enumerate(row):
            kind = type(value)
            if kind is float:
                if math.isfinite(value):
                    continue
                problem = "is not finite"  # 1e999 parses to inf
            elif kind is int:
                if abs(value) <= _FLOAT_MAX:
                    continue
                problem = "is beyond float range"
            elif value is None:
                continue
            else:
                problem = f"must be a number or null, not {_type_name(value)}"
            raise RequestError(
                400, f"feature {MODEL_FEATURES[j]!r} {problem}", f"instances[{i}][{j}]"
            )
    # Every value is a finite float, an int within float range or None (-> NaN).
    return np.array(instances, dtype=np.float64)


_FLOAT_MAX = int(np.finfo(np.float64).max)


# --- the server ---------------------------------------------------------------------------


class PredictionServer(ThreadingHTTPServer):
    """Serves one model; health says whether it is loaded."""

    daemon_threads = True  # a stuck client never holds the process up at shutdown
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], routes: Routes = Routes()) -> None:
        super().__init__(address, _Handler)
        self.routes = routes
        self.model: FraudModel | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def set_model(self, model: FraudModel) -> None:
        self.model = model  # one reference assignment: handlers see None or the model

    def start(self) -> PredictionServer:
        """Serve on a background thread (the caller keeps the main one for signals)."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: PredictionServer
    _body_read = True  # per request, from _route on
    protocol_version = "HTTP/1.1"  # keep-alive: Vertex's proxy reuses connections
    disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms ACK stall
    timeout = SOCKET_TIMEOUT_SECONDS
    server_version = "fraud-mlops-serving"
    sys_version = ""
    error_content_type = _JSON

    # --- routing ---

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._route("OPTIONS")

    def _route(self, method: str) -> None:
        self._body_read = False
        try:
            path = self.path.split("?", 1)[0]
            routes = self.server.routes
            if path == routes.predict:
                if method != "POST":
                    raise _NotAllowed("POST")
                self._predict()
            elif path == routes.health:
                if method not in ("GET", "HEAD"):
                    raise _NotAllowed("GET, HEAD")
                self._health(head=method == "HEAD")
            else:
                raise RequestError(404, f"no route {path[:100]!r}", "path")
        except _NotAllowed as exc:
            self._error(405, f"use {exc.allow}", headers={"Allow": exc.allow})
        except RequestError as exc:
            self._error(exc.status, exc.message, field=exc.field)
        except FraudMlopsError as exc:
            log.warning("request failed: %s: %s", type(exc).__name__, exc)
            self._error(exc.http_status, "the model could not score this request")
        except Exception:
            # A bug, not the caller's fault: logged with its trace, answered without one.
            log.exception("unexpected error serving %s %s", method, self.path[:100])
            self._error(500, "internal error")

    def _health(self, *, head: bool) -> None:
        if self.server.model is None:
            self._error(503, "the model is still loading", headers=_retry_after(), head=head)
            return
        self._send(200, {"status": "ok"}, head=head)

    def _predict(self) -> None:
        content_type = self.headers.get("Content-Type")
        if content_type and content_type.split(";", 1)[0].strip().lower() != _JSON:
            raise RequestError(415, "Content-Type must be application/json", "Content-Type")
        raw = self._read_body()
        model = self.server.model
        if model is None:  # checked after reading, so the connection stays usable
            self._error(503, "the model is still loading", headers=_retry_after())
            return
        matrix = instances_matrix(parse_body(raw))
        scores = model.predict(matrix)
        self._send(200, {"predictions": scores.tolist()})

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "send the body with a Content-Length", "Content-Length")
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise RequestError(411, "Content-Length is required", "Content-Length")
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            raise RequestError(400, "Content-Length is not a byte count", "Content-Length")
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"body larger than {MAX_BODY_BYTES} bytes", "body")
        try:
            raw = self.rfile.read(length)
        except TimeoutError as exc:
            self._body_read, self.close_connection = True, True
            raise RequestError(408, "the body did not arrive in time", "body") from exc
        self._body_read = True
        if len(raw) != length:  # the client closed its side early
            self.close_connection = True
            raise RequestError(400, "body shorter than its Content-Length", "body")
        return raw

    def _drain(self) -> bool:
        """Read and drop the body of a request refused before reading it; False when the
        connection cannot be reused (no usable length, too large, or the read failed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return False
        try:
            remaining = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return False
        if not 0 <= remaining <= DRAIN_LIMIT_BYTES:
            return False
        try:
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    return False
                remaining -= len(chunk)
        except OSError:
            return False
        return True

    # --- answers ---

    def _error(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        error: dict[str, Any] = {"code": status, "status": _STATUS.get(status, "UNKNOWN")}
        error["message"] = message
        if field is not None:
            error["field"] = field
        if not self._body_read:
            self._body_read = True
            # A body left unread would be taken for the next request: drop it or hang up.
            if not self._drain():
                self.close_connection = True
        self._send(status, {"error": error}, headers=headers, head=head)

    def _send(
        self,
        status: int,
        payload: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", _JSON)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, headers too long, an
        unknown method) as JSON too, never its HTML page."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # An unparsable request line leaves http.server's default, which sends no
            # status line or headers; no client speaks 0.9, so answer in full.
            self.request_version = "HTTP/1.0"
        status = 405 if code == HTTPStatus.NOT_IMPLEMENTED else code
        extra = {"Allow": "GET, HEAD, POST"} if status == 405 else None
        try:
            self._body_read = True  # nothing of this request can be trusted: no draining
            self._error(status, message or HTTPStatus(code).phrase, headers=extra)
        except OSError:
            pass  # the client is gone

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request would cost more than the prediction; errors are logged.
        pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.info("%s %s", self.address_string(), format % args)


class _NotAllowed(Exception):
    def __init__(self, allow: str) -> None:
        super().__init__(allow)
        self.allow = allow


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


# --- the process --------------------------------------------------------------------------


def load_in_background(
    server: PredictionServer, load: Callable[[], FraudModel], on_failure: Callable[[], None]
) -> threading.Thread:
    """Load the model off the serving thread; health turns 200 when it is in."""

    def run() -> None:
        started = time.monotonic()
        try:
            model = load()
        except FraudMlopsError as exc:
            log.error("cannot serve: %s: %s", type(exc).__name__, exc)
            on_failure()
            return
        except Exception:
            log.exception("cannot serve: loading the model failed")
            on_failure()
            return
        server.set_model(model)
        log.info("model loaded in %.1f s; serving", time.monotonic() - started)

    thread = threading.Thread(target=run, name="load-model", daemon=True)
    thread.start()
    return thread


def _env_port(env: dict[str, str]) -> int:
    raw = env.get("AIP_HTTP_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"AIP_HTTP_PORT={raw!r} is not a port number")
    return port


def _env_route(env: dict[str, str], name: str, default: str) -> str:
    route = env.get(name) or default
    if not route.startswith("/"):
        raise ValueError(f"{name}={route!r} must start with '/'")
    return route


def main(env: dict[str, str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0), or until the model fails to load (exit 1);
    exit 2 for an environment that names no port, route or artifact properly."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    env = dict(os.environ if env is None else env)
    try:
        port = _env_port(env)
        routes = Routes(
            health=_env_route(env, "AIP_HEALTH_ROUTE", DEFAULT_HEALTH_ROUTE),
            predict=_env_route(env, "AIP_PREDICT_ROUTE", DEFAULT_PREDICT_ROUTE),
        )
        storage_uri = env.get("AIP_STORAGE_URI", "")
        if not storage_uri:
            raise ValueError("AIP_STORAGE_URI is not set: no model to serve")
    except ValueError as exc:
        log.error("cannot serve: %s", exc)
        return 2

    stop = threading.Event()
    failed = threading.Event()
    workdir = Path(tempfile.mkdtemp(prefix="fraud-mlops-model-"))

    def load() -> FraudModel:
        return load_model(fetch_artifact(storage_uri, workdir))

    def fail() -> None:
        failed.set()
        stop.set()

    server = PredictionServer(("0.0.0.0", port), routes)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info(
        "listening on :%d (health %s, predict %s); loading %s",
        server.port,
        routes.health,
        routes.predict,
        storage_uri,
    )
    load_in_background(server, load, fail)
    stop.wait()
    server.stop()
    return 1 if failed.is_set() else 0
