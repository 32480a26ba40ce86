"""Every GCP call's policy: timeouts, a retry deadline, and vendor errors in our tree."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from app.backends.gcp.calls import CallPolicy, seam, translate
from app.core.config import CallPolicyConfig
from app.core.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)

POLICY = CallPolicy(timeout=1.0, deadline=0.2, initial=0.01, maximum=0.02)


@pytest.mark.parametrize(
    ("vendor", "ours"),
    [
        (gexc.NotFound("x"), NotFoundError),
        (gexc.Conflict("x"), ConflictError),
        (gexc.PreconditionFailed("x"), ConflictError),
        (gexc.BadRequest("x"), InvalidInputError),
        (gexc.PermissionDenied("x"), ConfigError),
        (gexc.Unauthenticated("x"), ConfigError),
        (auth_exc.DefaultCredentialsError("x"), ConfigError),
        (gexc.ServiceUnavailable("x"), BackendUnavailableError),
        (gexc.InternalServerError("x"), BackendUnavailableError),
    ],
)
def test_translate_vendor_error_maps_into_the_tree(vendor: Exception, ours: type) -> None:
    translated = translate(vendor, "reading a thing")
    assert type(translated) is ours
    assert str(translated).startswith(f"reading a thing: {type(vendor).__name__}")


def test_seam_raises_ours_from_the_vendor_error() -> None:
    with pytest.raises(NotFoundError) as caught, seam("fetching card"):
        raise gexc.NotFound("no such key")
    assert isinstance(caught.value.__cause__, gexc.NotFound)


def test_retry_transient_errors_until_the_deadline_then_backend_unavailable() -> None:
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        raise gexc.ServiceUnavailable("try later")

    gave_up = pytest.raises(BackendUnavailableError, match="gave up within the retry deadline")
    with gave_up, seam("calling a flaky service"):
        POLICY.retry()(flaky)()
    assert len(attempts) >= 2


def test_retry_does_not_repeat_a_request_error() -> None:
    attempts: list[int] = []

    def bad() -> None:
        attempts.append(1)
        raise gexc.BadRequest("malformed")

    with pytest.raises(InvalidInputError), seam("sending a bad request"):
        POLICY.retry()(bad)()
    assert attempts == [1]


def test_call_policy_deadline_shorter_than_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="deadline_seconds must be at least timeout_seconds"):
        CallPolicyConfig(timeout_seconds=10, deadline_seconds=5)
