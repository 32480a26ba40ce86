"""How every GCP call is made: a timeout per attempt, retries of transient errors until a
deadline, and vendor errors translated into the project's tree at this one seam.

Each backend wraps its client calls in :func:`seam` and passes ``policy.retry()`` and
``policy.timeout`` to them, so no call can hang or retry forever, and nothing above the
backends ever sees a ``google.api_core`` exception.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
import urllib3
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exc

from app.core.config import CallPolicyConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    FraudMlopsError,
    InvalidInputError,
    NotFoundError,
)

# Worth another attempt: the service (or the way to it) failed, not the request.
# The HTTP clients (storage, BigQuery) raise their transport's own errors for a dropped
# connection inside the retry loop, before anything becomes a google.api_core error.
TRANSIENT: tuple[type[Exception], ...] = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    ConnectionError,
    TimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    http.client.IncompleteRead,
    http.client.ResponseNotReady,
    http.client.BadStatusLine,
    auth_exc.TransportError,
)
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSPORT_FAILURES = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
)


def is_transient(exc: BaseException) -> bool:
    """Retry this? Known transient types, or a raw HTTP answer with a retryable status
    (the media layer's ``InvalidResponse`` carries the response it got)."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        return exc.code in RETRY_STATUS
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) in RETRY_STATUS


@dataclass(frozen=True)
class CallPolicy:
    timeout: float
    deadline: float
    initial: float
    maximum: float

    @classmethod
    def from_config(cls, cfg: CallPolicyConfig) -> CallPolicy:
        return cls(
            timeout=cfg.timeout_seconds,
            deadline=cfg.deadline_seconds,
            initial=cfg.initial_backoff_seconds,
            maximum=cfg.max_backoff_seconds,
        )

    def retry(self, predicate: Callable[[BaseException], bool] = is_transient) -> gretry.Retry:
        return gretry.Retry(
            predicate=predicate,
            initial=self.initial,
            maximum=self.maximum,
            multiplier=2.0,
            timeout=self.deadline,
        )


def translate(exc: BaseException, what: str) -> FraudMlopsError:
    """The project error for a vendor error met while doing ``what``."""
    detail = f"{what}: {type(exc).__name__}: {_message(exc)}"
    if isinstance(exc, gexc.NotFound):
        return NotFoundError(detail)
    if isinstance(exc, gexc.Conflict | gexc.AlreadyExists | gexc.PreconditionFailed):
        return ConflictError(detail)
    if isinstance(exc, gexc.BadRequest | gexc.InvalidArgument | gexc.OutOfRange):
        return InvalidInputError(detail)
    denied = gexc.Forbidden | gexc.PermissionDenied | gexc.Unauthorized | gexc.Unauthenticated
    if isinstance(exc, denied | auth_exc.DefaultCredentialsError):
        # A missing grant or credential is fixed in the stack, not by retrying.
        return ConfigError(detail)
    return BackendUnavailableError(detail)


@contextmanager
def seam(what: str) -> Iterator[None]:
    """Translate whatever the client raises while doing ``what``."""
    try:
        yield
    except FraudMlopsError:
        raise
    except gexc.RetryError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise BackendUnavailableError(
            f"{what}: gave up within the retry deadline: {type(cause).__name__}: {_message(cause)}"
        ) from exc
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, ConnectionError, TimeoutError) as exc:
        raise translate(exc, what) from exc
    except (
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
    ) as exc:
        raise BackendUnavailableError(f"{what}: {type(exc).__name__}: {_message(exc)}") from exc


def vertex_client_options(location: str) -> dict[str, str]:
    """Vertex AI is regional: each of its services answers on the region's own endpoint."""
    return {"api_endpoint": f"{location}-aiplatform.googleapis.com"}


def vertex_label(text: str) -> str:
    """``text`` as a Vertex AI label value: lowercase ``[a-z0-9_-]``, at most 63 chars."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    # One line, bounded: vendor messages can carry whole response bodies.
    return " ".join(str(text).split())[:300]
