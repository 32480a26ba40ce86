"""HTTP prediction function (functions-framework, Cloud Functions gen 2).

``POST {"card_number": "..."}`` -> the card's fraud score. Errors come back as
JSON with a status that says whose fault it is; never a stack trace, never a
full card number, in a response or a log.

Serve locally: ``functions-framework --source app/function/main.py --target predict``.
"""

from __future__ import annotations

import json
import logging
import uuid
from functools import cache
from typing import Any

import flask
import functions_framework

from app.backends import Backends
from app.core.config import load_config
from app.core.errors import FraudMlopsError, InvalidInputError
from app.core.scoring import Scorer

log = logging.getLogger("fraud_mlops.function")
if not logging.getLogger().handlers:
    # One line per request on stdout: Cloud Logging collects it on GCP.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
MAX_BODY_BYTES = 4096
RETRY_AFTER_SECONDS = 1

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


@cache
def _scorer() -> Scorer:
    # Built on the first request, not at import: the config comes from the environment.
    return Scorer.from_services(Backends(load_config()))


def _error(code: int, message: str, request_id: str, **extra: Any) -> flask.Response:
    body = {
        "error": {"code": code, "status": _STATUS[code], "message": message, **extra},
        "request_id": request_id,
    }
    resp = flask.make_response(json.dumps(body), code)
    resp.headers["Content-Type"] = "application/json"
    if code == 405:
        resp.headers["Allow"] = "POST"
    if code == 503:
        # A dependency is down (or still starting): tell callers when to try again.
        resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return resp


@functions_framework.http
def predict(request: flask.Request) -> flask.Response:
    request_id = request.headers.get("X-Cloud-Trace-Context", "").split("/")[0] or uuid.uuid4().hex
    if request.method != "POST":
        return _error(405, "use POST with a JSON body", request_id)
    if request.mimetype != "application/json":
        return _error(415, "Content-Type must be application/json", request_id)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", request_id)
    # Chunked bodies carry no Content-Length: read at most one byte past the limit.
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", request_id)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "body is not valid JSON", request_id, field="body")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object", request_id, field="body")
    if "card_number" not in body:
        return _error(400, "card_number is required", request_id, field="card_number")
    unknown = sorted(set(body) - {"card_number"})
    if unknown:
        return _error(400, f"unknown fields: {', '.join(unknown)}", request_id, field=unknown[0])

    try:
        score = _scorer().score(body["card_number"])
    except FraudMlopsError as exc:
        code = exc.http_status
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

    log.info(
        "scored card=%s p=%.4f model=%s latency_ms=%.1f request=%s",
        score.card,
        score.fraud_probability,
        score.model_version,
        score.latency_ms,
        request_id,
    )
    resp = flask.make_response(json.dumps(score.as_response()), 200)
    resp.headers["Content-Type"] = "application/json"
    return resp
