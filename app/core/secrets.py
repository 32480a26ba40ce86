"""The card-id HMAC key, from the configured secret source."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from app.core.config import FileSecretConfig, RuntimeConfig
from app.core.errors import BackendUnavailableError, ConfigError

KEY_BYTES = 32


def card_key(cfg: RuntimeConfig, *, create: bool = False) -> bytes:
    """The key; only the loader may ``create`` it.

    A reader that made a fresh key would silently key every card differently
    (every lookup a 404, every card's history split), so readers fail instead.
    """
    source = cfg.card_key
    if isinstance(source, FileSecretConfig):
        if not create and not source.path.exists():
            raise ConfigError(f"card key {source.path} does not exist; load data first")
        return _file_key(source.path)
    raise BackendUnavailableError(f"card key source {source.kind!r} is not part of this build yet")


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
