"""A byte-for-byte reproducible zip of the prediction function's source.

Same files in, same bytes out (sorted entries, fixed timestamps and modes), so
the object name can carry the content hash and an unchanged source does not
redeploy the function.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class SourceArchive:
    data: bytes
    sha256: str
    files: tuple[str, ...]

    @property
    def object_name(self) -> str:
        return f"function-source/{self.sha256[:20]}.zip"

    def write_to(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"function-{self.sha256[:20]}.zip"
        if not path.exists() or path.read_bytes() != self.data:
            path.write_bytes(self.data)
        return path


def _walk(root: Path, tree: Path) -> Iterable[tuple[str, Path]]:
    if not tree.exists():
        return
    for path in [tree] if tree.is_file() else sorted(tree.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or _SKIP_DIRS.intersection(rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        yield rel.as_posix(), path


def build_archive(
    root: Path, trees: Iterable[str], extra: Mapping[str, str] | None = None
) -> SourceArchive:
    """Zip ``trees`` (files or directories, relative to ``root``) plus generated
    ``extra`` files.

    Trees that do not exist contribute nothing: the archive of what exists.
    """
    entries: dict[str, bytes] = {}
    for tree in trees:
        for rel, path in _walk(root, root / tree):
            entries[rel] = path.read_bytes()
    for rel, text in (extra or {}).items():
        entries[rel] = text.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(entries):
            info = zipfile.ZipInfo(rel, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[rel])
    data = buffer.getvalue()
    return SourceArchive(
        data=data, sha256=hashlib.sha256(data).hexdigest(), files=tuple(sorted(entries))
    )
