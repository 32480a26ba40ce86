"""HTTP prediction function (functions-framework, Cloud Functions gen 2).

``POST /`` with ``{"card_number": "..."}`` -> the card's fraud score; ``GET /healthz`` ->
200 once the card key, the online store and the model are open, 503 (``Retry-After``)
while one is missing. Every other answer is a JSON error with a status that says whose
fault it is (``docs/openapi/function.yaml`` documents each one); never HTML, never a stack
trace, never a full card number, in a response or a log.

Framework-level errors (an unrouted path, an exception outside the function) get the same
JSON shape through error handlers registered on the app functions-framework builds: it
executes this module inside that app's context, so ``flask.current_app`` is that app.

Readiness and fork safety: under gunicorn (what ``functions-framework`` runs when not in
debug, locally and on GCP) the module is imported in the master, which then forks the
workers. Nothing here opens a file, a socket or a SQLite connection at import: each
worker warms itself in a background thread right after the fork (``os.register_at_fork``),
and ``GET /healthz`` (or the first request) warms lazily where nothing forks (the Flask
debug server, the test client).

Serve locally: ``functions-framework --source app/function/main.py --target predict``.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from functools import cache
from http import HTTPStatus
from typing import Any

import flask
import functions_framework
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length

from app.backends import Backends
from app.core.cards import may_hold_pan
from app.core.config import load_config
from app.core.errors import FraudMlopsError, InvalidInputError
from app.core.scoring import Scorer

log = logging.getLogger("fraud_mlops.function")

try:  # what gunicorn's body reader raises for broken chunked framing
    from gunicorn.http.errors import NoMoreData as _BodyCutShort
    from gunicorn.http.errors import ParseException as _ServerParseError

    # NoMoreData: the client closed inside a chunked body; its fault, not ours.
    _BODY_FRAMING_ERRORS: tuple[type[Exception], ...] = (_ServerParseError, _BodyCutShort)
except ImportError:  # served by something else (werkzeug raises ClientDisconnected)
    _BODY_FRAMING_ERRORS = ()
# DEBUG adds a line per scored request (card masked): for debugging, not for load.
LOG_LEVEL_ENV = "FRAUD_MLOPS_LOG_LEVEL"
if not logging.getLogger().handlers:
    # Warnings and errors (a 5xx, a failed warm-up) and one line per worker when it is
    # ready, on stderr: Cloud Logging collects them on GCP. A line per scored request is
    # DEBUG (docs/serving.md, "Profile": at INFO it cost as much CPU as the scoring);
    # Cloud Run's request log has every request's status, latency and trace already.
    _level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    logging.basicConfig(
        level=_level if _level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
MAX_BODY_BYTES = 4096
# Far deeper than any request we accept ({"card_number": "..."} is depth 1) and far
# shallower than the json module's recursion limit, which a 4 KB body can otherwise reach.
MAX_NESTING = 32
RETRY_AFTER_SECONDS = 1
SCORE_PATH = "/"
HEALTH_PATH = "/healthz"
FIELDS = frozenset({"card_number"})

_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ABORTED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
# Every other status a framework error could carry is folded into one of ours, so the
# documented set of statuses stays closed.
_FOLD = {411: 400, 414: 400, 416: 400, 417: 400, 422: 400, 428: 400, 431: 400, 501: 405}
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_FUNCTION_STATUS_HEADER = "X-Google-Status"  # functions-framework's "crash" marker
JSON = "application/json"

_scorer_lock = threading.Lock()


@cache
def _scorer() -> Scorer:
    # Built on the first request, not at import: the config comes from the environment.
    return Scorer.from_services(Backends(load_config()))


def _shared_scorer() -> Scorer:
    # gthread workers serve requests on several threads and the post-fork warm-up runs on
    # another: the lock makes them all share the one Scorer instead of racing to build two.
    with _scorer_lock:
        return _scorer()


def _new_request_id() -> str:
    # 32 random hex digits (the documented RequestId), without building a uuid.UUID.
    return os.urandom(16).hex()


def _request_id(request: flask.Request) -> str:
    # X-Cloud-Trace-Context is "TRACE_ID/SPAN_ID;o=1", TRACE_ID 32 hex digits. Anything
    # else is caller-controlled text that could hold a card number: it is neither logged
    # nor echoed, and the request gets an id of its own. Read from the environ (what
    # request.headers.get reads too) to skip the headers view on every request.
    header = request.environ.get("HTTP_X_CLOUD_TRACE_CONTEXT")
    if not header:
        return _new_request_id()
    trace = header.split("/")[0].strip()
    if _TRACE_ID.fullmatch(trace) and not may_hold_pan(trace):
        return trace.lower()
    return _new_request_id()


def _error(code: int, message: str, request_id: str, **extra: Any) -> flask.Response:
    body = {
        "error": {"code": code, "status": _STATUS[code], "message": message, **extra},
        "request_id": request_id,
    }
    resp = flask.Response(json.dumps(body).encode(), code, content_type=JSON)
    if code == 405:
        allowed = "GET, HEAD" if flask.has_request_context() and _is_health() else "POST"
        resp.headers["Allow"] = allowed
    if code == 503:
        # A dependency is down (or still starting): tell callers when to try again.
        resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return resp


def _json(payload: dict[str, Any], code: int = 200) -> flask.Response:
    # The response class directly: what flask.make_response builds for a str, without
    # its dispatch on the value's type and a second header write.
    return flask.Response(json.dumps(payload).encode(), code, content_type=JSON)


def _is_health() -> bool:
    return flask.request.path == HEALTH_PATH


def nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting in JSON text, brackets inside strings not counted.

    A linear scan, so a hostile body is measured without recursing into it.
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _codings(value: str) -> list[str]:
    return [c.strip().lower() for c in value.split(",") if c.strip()]


def _reject_framing(request: flask.Request, request_id: str) -> flask.Response | None:
    """The 405/415/413 answers that need only the method and the headers."""
    environ = request.environ
    if (
        request.method == "POST"
        and environ.get("CONTENT_TYPE") == JSON
        and "HTTP_CONTENT_ENCODING" not in environ
        and "HTTP_TRANSFER_ENCODING" not in environ
    ):
        # The usual request, decided on the raw environ: exactly "application/json" (no
        # parameters, so no charset), no content or transfer coding. Anything else takes
        # the full checks below.
        if (get_content_length(environ) or 0) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", request_id)
        return None
    if request.method != "POST":
        return _error(405, "use POST with a JSON body", request_id)
    encodings = [
        c for c in _codings(request.headers.get("Content-Encoding", "")) if c != "identity"
    ]
    if encodings:
        return _error(
            415, "Content-Encoding is not supported: send the body uncompressed", request_id
        )
    # gunicorn removes the chunked framing but hands any other transfer coding (gzip,
    # deflate) through undecoded.
    transfer = [c for c in _codings(request.headers.get("Transfer-Encoding", "")) if c != "chunked"]
    if transfer:
        return _error(415, "Transfer-Encoding other than chunked is not supported", request_id)
    if request.mimetype != JSON:
        return _error(415, "Content-Type must be application/json", request_id)
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8"):
        return _error(415, "charset must be utf-8", request_id)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", request_id)
    return None


def _read_body(request: flask.Request) -> bytes | None:
    """The body, at most one byte past the limit; None when its framing is broken.

    Chunked bodies carry no Content-Length: read in as many reads as the server needs
    to hand it over. A malformed chunk (a size that is no hex number, a missing CRLF)
    is found only while reading, by the server's parser, after the app was called.
    """
    stream = request.stream
    parts: list[bytes] = []
    size = 0
    try:
        while size <= MAX_BODY_BYTES:
            part = stream.read(MAX_BODY_BYTES + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
    except _BODY_FRAMING_ERRORS:
        return None
    return b"".join(parts)


def _parse_body(raw: bytes, request_id: str) -> dict[str, Any] | flask.Response:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "body is not valid UTF-8", request_id, field="body")
    # The depth is at most the number of opening brackets: count them (in C) first.
    if (text.count("{") + text.count("[")) > MAX_NESTING and nesting_depth(text) > MAX_NESTING:
        return _error(400, f"body nests deeper than {MAX_NESTING} levels", request_id, field="body")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return _error(400, "body is not valid JSON", request_id, field="body")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object", request_id, field="body")
    if "card_number" not in body:
        return _error(400, "card_number is required", request_id, field="card_number")
    if len(body) == 1:  # card_number alone
        return body
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        # A field's name is the caller's text too: named only when it cannot be a card number.
        safe = [n for n in unknown if _SAFE_NAME.fullmatch(n) and not may_hold_pan(n)]
        if safe:
            message = f"unknown field {safe[0]}: only card_number is accepted"
            return _error(400, message, request_id, field=safe[0])
        return _error(400, "unknown field: only card_number is accepted", request_id, field="body")
    return body


def _health(request_id: str) -> flask.Response:
    try:
        _warm()
    except Exception as exc:
        # Whatever stops the warm-up (a missing key, an unsynced store, no deployed model,
        # a bug), the answer to a readiness probe is "not yet", with when to ask again.
        log.warning("not ready (request %s): %s: %s", request_id, type(exc).__name__, exc)
        return _error(503, f"not ready: {type(exc).__name__}", request_id)
    return _json({"status": "ready", "request_id": request_id})


@functions_framework.http
def predict(request: flask.Request) -> flask.Response:
    request_id = _request_id(request)
    if request.path == HEALTH_PATH:
        if request.method not in ("GET", "HEAD"):
            return _error(405, "use GET for readiness", request_id)
        return _health(request_id)
    if request.path != SCORE_PATH:
        return _error(404, f"no such path: POST {SCORE_PATH} scores a card", request_id)
    rejected = _reject_framing(request, request_id)
    if rejected is not None:
        return rejected
    raw = _read_body(request)
    if raw is None:
        return _error(400, "malformed chunked body", request_id, field="body")
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", request_id)
    body = _parse_body(raw, request_id)
    if isinstance(body, flask.Response):
        return body

    try:
        score = _shared_scorer().score(body["card_number"])
    except FraudMlopsError as exc:
        code = exc.http_status if exc.http_status in _STATUS else 500
        field = exc.location if isinstance(exc, InvalidInputError) else None
        message = exc.detail if isinstance(exc, InvalidInputError) else str(exc)
        if code >= 500:
            log.warning("request %s failed: %s: %s", request_id, type(exc).__name__, exc)
            message = (
                "scoring backend unavailable; retry later" if code == 503 else "internal error"
            )
        extra = {"field": field} if field else {}
        return _error(code, message, request_id, **extra)
    except Exception:
        log.exception("request %s: unexpected error", request_id)
        return _error(500, "internal error", request_id)

    # DEBUG: suppressed, the call is a cached level check and no formatting runs.
    log.debug(
        "scored card=%s p=%.4f model=%s latency_ms=%.1f request=%s",
        score.card,
        score.fraud_probability,
        score.model_version,
        score.latency_ms,
        request_id,
    )
    return _json(score.as_response())


# --- readiness -------------------------------------------------------------------------


def _warm() -> None:
    # Idempotent: Scorer.warm() opens only what is not open yet.
    _shared_scorer().warm()


def _warm_in_background() -> None:
    # Only in a gunicorn worker: other processes that fork after importing this module
    # (a test session's task runners) have nothing to warm.
    if "gunicorn.arbiter" not in sys.modules:
        return

    def run() -> None:
        try:
            _warm()
        except Exception as exc:  # not fatal: /healthz says 503 and retries the warm-up
            log.warning("warm-up after fork failed: %s: %s", type(exc).__name__, exc)
        else:
            # What is loaded now (imports, the model, the store) lives as long as the
            # worker: out of the collector's reach, a full collection does not walk it,
            # which is a pause of milliseconds inside whichever request triggers one.
            gc.collect()
            gc.freeze()
            log.info("worker %d ready: card key, online store and model open", os.getpid())

    threading.Thread(target=run, name="fraud-mlops-warm", daemon=True).start()


if hasattr(os, "register_at_fork"):
    # Runs in each gunicorn worker right after the master forks it: the worker's own
    # connections, opened in its own process. The master (which imported this module)
    # never opens any, so no SQLite handle crosses a fork.
    os.register_at_fork(after_in_child=_warm_in_background)


# --- framework-level errors and the body limit ------------------------------------------


def _http_error(exc: HTTPException) -> flask.Response:
    # A werkzeug/Flask error raised outside the function (an unrouted path such as
    # /favicon.ico, a bad request werkzeug noticed): our shape, never its HTML page.
    code = exc.code or 500
    code = _FOLD.get(code, code)
    if code not in _STATUS:
        code = 400 if code < 500 else 500
    request_id = _current_request_id()
    if code == 500:
        return _unexpected(exc)
    messages = {
        404: f"no such path: POST {SCORE_PATH} scores a card",
        405: "use GET for readiness"
        if flask.has_request_context() and _is_health()
        else "use POST with a JSON body",
        413: f"body larger than {MAX_BODY_BYTES} bytes",
    }
    return _error(code, messages.get(code, "bad request"), request_id)


def _current_request_id() -> str:
    return _request_id(flask.request) if flask.has_request_context() else _new_request_id()


def _unexpected(exc: BaseException) -> flask.Response:
    request_id = _current_request_id()
    original = getattr(exc, "original_exception", None) or exc
    # The class only: an exception's text may quote the request.
    log.error("request %s: unexpected %s", request_id, type(original).__name__)
    resp = _error(500, "internal error", request_id)
    resp.headers[_FUNCTION_STATUS_HEADER] = "crash"
    return resp


def _gunicorn_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it could not parse (a bad request line, method,
    header or chunk size), in our JSON shape instead of its HTML page.

    gunicorn's page quotes the offending request text (``mesg``): a card number sent as
    a method or in a malformed header would come back in the response. Only the status
    is kept, folded into the documented set; nothing of the request is echoed.
    """
    # 400 unless it is a 500 (gunicorn's own misconfiguration): its 414, 431, 403 and 501
    # all say the message was not one we serve.
    code = 500 if status_int >= 500 and status_int != 501 else 400
    body = json.dumps(
        {
            "error": {"code": code, "status": _STATUS[code], "message": "malformed HTTP request"},
            "request_id": _new_request_id(),
        }
    ).encode()
    head = (
        f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\nConnection: close\r\n"
        f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    import gunicorn.util

    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


class _NoCardNumbers(logging.Filter):
    """Drops the text of a record that may hold a card number, keeping that it happened.

    For gunicorn's own log: it writes the request text it could not parse (at WARNING,
    which functions-framework's default level ``error`` hides, but an operator may lower
    it) and that text may hold a card number.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is kept as it is
            return True
        if may_hold_pan(text):
            record.msg = f"{record.name}: text withheld, it may hold a card number"
            record.args = ()
        return True


def _answer_unparsable_requests_in_json() -> None:
    # gunicorn's workers look write_error up on its module each time they need it, so
    # replacing it here, where the app is imported (before gunicorn forks its workers,
    # under functions-framework on Cloud Run as locally), covers every worker.
    try:
        import gunicorn.util
    except ImportError:  # served by something else: nothing to replace
        return
    gunicorn.util.write_error = _gunicorn_error
    logging.getLogger("gunicorn.error").addFilter(_NoCardNumbers())


_answer_unparsable_requests_in_json()


class _BoundedInput(io.RawIOBase):
    """``wsgi.input`` that ends after ``limit`` bytes, whatever the client sends."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        # The bytes straight from the server's stream, without RawIOBase.read's buffer
        # and copy (readinto); size < 0 reads to the end, through readall.
        if size is None or size < 0:
            return self.readall()
        size = min(size, self._left)
        if size <= 0:
            return b""
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._left)
        if size <= 0:
            return 0
        data = self._stream.read(size)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _bounded_body(app: WSGIApp) -> WSGIApp:
    """Never let the app read more than one byte past the limit.

    functions-framework reads the whole remaining body after every response
    (``read_request``): without this bound, a chunked body of any size sent after a 413
    would be read into memory. What is left unread, gunicorn discards before the next
    request on the connection, a buffer at a time.
    """

    def bounded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # werkzeug's reading of the headers (chunked overrides Content-Length), so the
        # bound agrees with request.content_length.
        declared = get_content_length(environ)
        # Without a length and without a server-terminated stream, werkzeug reads no body
        # at all; reading past the end could block, so leave that case alone.
        if declared is not None or environ.get("wsgi.input_terminated"):
            if declared is None:
                cap = MAX_BODY_BYTES + 1
            else:
                # A declared oversize body is refused on its header alone: reading none of
                # it means no wait for a client still sending (or never sending) it.
                cap = declared if declared <= MAX_BODY_BYTES else 0
            environ["wsgi.input"] = _BoundedInput(environ["wsgi.input"], cap)
            # The stream now ends on its own: werkzeug may read it to EOF.
            environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return bounded


def _install(app: flask.Flask) -> None:
    # functions-framework adds its routes after this module runs, so they pick these up:
    # no 308 redirect (an HTML page) for "//" or a missing trailing slash.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.register_error_handler(HTTPException, _http_error)
    # Replaces functions-framework's crash_handler, which answers 500 with str(exc) as text.
    app.register_error_handler(500, _unexpected)
    app.register_error_handler(Exception, _unexpected)
    app.wsgi_app = _bounded_body(app.wsgi_app)  # type: ignore[method-assign, assignment]


if flask.has_app_context():  # imported by functions-framework's create_app
    _install(flask.current_app._get_current_object())  # type: ignore[attr-defined]
