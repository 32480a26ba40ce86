"""The Secret Manager card key, at the client boundary: the exact request, and the errors."""

from __future__ import annotations

from types import SimpleNamespace

import google_crc32c
import pytest
from google.api_core import exceptions as gexc

from app.backends.gcp.calls import CallPolicy
from app.backends.gcp.secret_manager_card_key import SecretManagerCardKeySource
from app.core.errors import BackendUnavailableError, ConfigError
from tests.support.recording import RecordingClient

VERSION = "projects/fraud-mlops-dev/secrets/card-key/versions/1"
POLICY = CallPolicy(timeout=2.0, deadline=0.3, initial=0.01, maximum=0.02)


def _response(text: bytes, *, crc: int | None = None) -> SimpleNamespace:
    checksum = int.from_bytes(google_crc32c.Checksum(text).digest(), "big") if crc is None else crc
    return SimpleNamespace(payload=SimpleNamespace(data=text, data_crc32c=checksum))


def test_key_reads_the_named_version_once_with_timeout_and_retry() -> None:
    client = RecordingClient({"access_secret_version": _response(b"ab" * 32 + b"\n")})
    source = SecretManagerCardKeySource(VERSION, POLICY, client)

    assert source.key() == bytes.fromhex("ab" * 32)
    assert source.key(create=True) == bytes.fromhex("ab" * 32)
    (call,) = client.calls  # read once per instance
    assert call.request == {"name": VERSION}
    assert call.kwargs["timeout"] == 2.0
    assert call.kwargs["retry"] is not None and call.kwargs["retry"]._timeout == 0.3


def test_key_missing_version_is_a_config_error_even_for_the_loader() -> None:
    client = RecordingClient({"access_secret_version": gexc.NotFound("no such version")})

    with pytest.raises(ConfigError, match="does not exist; add the key"):
        SecretManagerCardKeySource(VERSION, POLICY, client).key(create=True)


def test_key_checksum_mismatch_is_refused() -> None:
    client = RecordingClient({"access_secret_version": _response(b"ab" * 32, crc=12345)})

    with pytest.raises(ConfigError, match="checksum mismatch"):
        SecretManagerCardKeySource(VERSION, POLICY, client).key()


@pytest.mark.parametrize(("text", "reason"), [(b"not hex", "not hex"), (b"abcd", "shorter")])
def test_key_malformed_material_is_refused(text: bytes, reason: str) -> None:
    client = RecordingClient({"access_secret_version": _response(text)})

    with pytest.raises(ConfigError, match=reason):
        SecretManagerCardKeySource(VERSION, POLICY, client).key()


def test_key_service_down_retries_then_is_backend_unavailable() -> None:
    client = RecordingClient({"access_secret_version": gexc.ServiceUnavailable("down")})

    with pytest.raises(BackendUnavailableError, match="retry deadline"):
        SecretManagerCardKeySource(VERSION, POLICY, client).key()
    assert len(client.calls) >= 2  # retried before giving up


def test_key_permission_denied_is_a_config_error() -> None:
    client = RecordingClient({"access_secret_version": gexc.PermissionDenied("no accessor")})

    with pytest.raises(ConfigError, match="PermissionDenied"):
        SecretManagerCardKeySource(VERSION, POLICY, client).key()
