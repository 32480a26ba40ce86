"""The card-id HMAC key in a local file (mode 0600); on GCP, a Secret Manager version."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Self

from app.core.config import FileSecretConfig
from app.core.errors import ConfigError

KEY_BYTES = 32


class FileCardKeySource:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: bytes | None = None

    @classmethod
    def from_config(cls, section: FileSecretConfig, _backends: object) -> Self:
        return cls(section.path)

    def key(self, *, create: bool = False) -> bytes:
        """The key; only the loader may ``create`` it (see :class:`CardKeySource`)."""
        if self._key is not None:
            return self._key
        if not create and not self.path.exists():
            raise ConfigError(f"card key {self.path} does not exist; load data first")
        self._key = _file_key(self.path)
        return self._key


def _file_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(KEY_BYTES))
        try:
            # link() fails if another process won the race; theirs is then the key.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: card key is not hex") from exc
    if len(key) < 16:
        raise ConfigError(f"{path}: card key is shorter than 16 bytes")
    return key
