from __future__ import annotations

import io
import zipfile
from pathlib import Path

from components.function_source import build_archive

TREES = ("app/__init__.py", "app/core", "app/function")


def test_build_archive_same_source_twice_gives_same_bytes_and_name(source_root: Path) -> None:
    first = build_archive(source_root, TREES)
    # Touching files (new mtimes) must not change the archive.
    for path in source_root.rglob("*.py"):
        path.touch()
    second = build_archive(source_root, TREES)

    assert first.data == second.data
    assert first.object_name == second.object_name


def test_build_archive_changed_file_gives_new_name(source_root: Path) -> None:
    before = build_archive(source_root, TREES)
    (source_root / "app/function/main.py").write_text("def predict(request):\n    return 1\n")
    after = build_archive(source_root, TREES)

    assert before.object_name != after.object_name


def test_build_archive_skips_bytecode_and_other_trees(source_root: Path) -> None:
    archive = build_archive(source_root, TREES, extra={"main.py": "x = 1\n"})

    names = zipfile.ZipFile(io.BytesIO(archive.data)).namelist()
    assert names == sorted(names)
    assert "main.py" in names
    assert "app/function/main.py" in names and "app/core/sql/training.sql" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert not [n for n in names if n.startswith("app/dags/")]


def test_build_archive_missing_tree_archives_what_exists(tmp_path: Path) -> None:
    (tmp_path / "app/core").mkdir(parents=True)
    (tmp_path / "app/core/x.py").write_text("X = 1\n")

    archive = build_archive(tmp_path, TREES)

    assert archive.files == ("app/core/x.py",)
