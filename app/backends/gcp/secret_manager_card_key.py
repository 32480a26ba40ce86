"""The card-id HMAC key from a Secret Manager version.

The stack creates the secret and names its version in the runtime config; the key
material is added by the operator (``docs/deploy-gcp.md``), never by a program, so it
never sits in Pulumi state, a log or a DAG run. So nothing here creates a key, not
even the loader: a missing version is a config error, for every caller.
"""

from __future__ import annotations

import threading
from typing import Any, Self

import google_crc32c

from app.backends.gcp.calls import CallPolicy, seam
from app.core.config import SecretManagerConfig
from app.core.errors import ConfigError, NotFoundError
from app.core.ports import Services

MIN_KEY_BYTES = 16


class SecretManagerCardKeySource:
    def __init__(self, version: str, policy: CallPolicy, client: Any = None) -> None:
        self.version = version
        self.policy = policy
        self._client = client
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, section: SecretManagerConfig, backends: Services) -> Self:
        return cls(section.secret_version, CallPolicy.from_config(backends.config.gcp_calls))

    def _secrets(self) -> Any:
        if self._client is None:
            from google.cloud import secretmanager

            self._client = secretmanager.SecretManagerServiceClient()
        return self._client

    def key(self, *, create: bool = False) -> bytes:
        """The key, read once per instance (``create`` is refused: see the module doc)."""
        with self._lock:
            if self._key is None:
                self._key = self._read()
            return self._key

    def _read(self) -> bytes:
        try:
            with seam(f"reading card key {self.version}"):
                response = self._secrets().access_secret_version(
                    request={"name": self.version},
                    timeout=self.policy.timeout,
                    retry=self.policy.retry(),
                )
        except NotFoundError as exc:
            raise ConfigError(
                f"card key {self.version} does not exist; add the key as a secret version "
                "(see docs/deploy-gcp.md)"
            ) from exc
        data: bytes = response.payload.data
        # Secret Manager returns the checksum it stored: a corrupt read must not key cards.
        crc = google_crc32c.Checksum(data)
        if response.payload.data_crc32c and int.from_bytes(crc.digest(), "big") != int(
            response.payload.data_crc32c
        ):
            raise ConfigError(f"card key {self.version}: checksum mismatch on read")
        try:
            key = bytes.fromhex(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"card key {self.version} is not hex text") from exc
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"card key {self.version} is shorter than {MIN_KEY_BYTES} bytes")
        return key
