from __future__ import annotations

from pathlib import Path

import pytest

from components.source_closure import module_closure, package_modules


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


BASE = {
    "app/__init__.py": "",
    "app/core/__init__.py": "",
    "app/core/util.py": "X = 1\n",
    "app/core/names.py": "NAME = 'n'\n",
    "app/core/deep/__init__.py": "",
    "app/core/deep/leaf.py": "import os\n",
    "app/core/sql/__init__.py": "",
    "app/core/sql/query.sql": "SELECT 1\n",
    "app/core/sql/notes.md": "data beside the code\n",
    "app/core/sql/nested/extra.sql": "SELECT 2\n",
    "app/unused/__init__.py": "",
    "app/unused/thing.py": "Y = 2\n",
}


def test_module_closure_function_body_import_followed(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            **BASE,
            "app/entry.py": "def task():\n    import app.core.util\n    return app.core.util.X\n",
        },
    )

    assert module_closure(root, ["app.entry"]) == [
        "app/__init__.py",
        "app/core/__init__.py",
        "app/core/util.py",
        "app/entry.py",
    ]


def test_module_closure_from_import_of_submodule_includes_submodule(tmp_path: Path) -> None:
    root = _tree(tmp_path, {**BASE, "app/entry.py": "from app.core import util\n"})

    files = module_closure(root, ["app.entry"])

    assert "app/core/util.py" in files
    assert "app/core/names.py" not in files


def test_module_closure_from_import_of_name_includes_defining_module(tmp_path: Path) -> None:
    root = _tree(tmp_path, {**BASE, "app/entry.py": "from app.core.names import NAME\n"})

    assert module_closure(root, ["app.entry"]) == [
        "app/__init__.py",
        "app/core/__init__.py",
        "app/core/names.py",
        "app/entry.py",
    ]


def test_module_closure_from_import_of_package_name_includes_its_init(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            **BASE,
            "app/core/__init__.py": "VERSION = 1\n",
            "app/entry.py": "from app.core import VERSION\n",
        },
    )

    assert module_closure(root, ["app.entry"]) == [
        "app/__init__.py",
        "app/core/__init__.py",
        "app/entry.py",
    ]


def test_module_closure_transitive_imports_and_parent_inits_included(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            **BASE,
            "app/entry.py": "from app.core.util import X\n",
            "app/core/util.py": "from app.core.deep import leaf\nX = 1\n",
        },
    )

    files = module_closure(root, ["app.entry"])

    assert {"app/core/deep/__init__.py", "app/core/deep/leaf.py"} <= set(files)
    assert not [f for f in files if f.startswith("app/unused/")]


def test_module_closure_relative_import_resolved_inside_package(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {**BASE, "app/core/deep/leaf.py": "from .. import util\nfrom . import sibling\n",
         "app/core/deep/sibling.py": "", "app/entry.py": "import app.core.deep.leaf\n"},
    )  # fmt: skip

    files = module_closure(root, ["app.entry"])

    assert {"app/core/util.py", "app/core/deep/sibling.py"} <= set(files)


def test_module_closure_third_party_imports_ignored(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {**BASE, "app/entry.py": "import json\nimport apple\nfrom flask import Flask\n"},
    )

    assert module_closure(root, ["app.entry"]) == ["app/__init__.py", "app/entry.py"]


def test_module_closure_lazy_package_included_recursively_with_its_imports(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            **BASE,
            "app/entry.py": "",
            "app/backends/__init__.py": "",
            "app/backends/gcp/__init__.py": "",
            "app/backends/gcp/store.py": "from app.core.names import NAME\n",
            "app/backends/gcp/sub/impl.py": "",
            "app/backends/local/__init__.py": "",
        },
    )

    files = module_closure(root, ["app.entry"], lazy_packages=["app.backends.gcp"])

    assert {
        "app/backends/__init__.py",
        "app/backends/gcp/__init__.py",
        "app/backends/gcp/store.py",
        "app/backends/gcp/sub/impl.py",
        "app/core/names.py",
    } <= set(files)
    assert not [f for f in files if f.startswith("app/backends/local/")]


def test_module_closure_missing_lazy_package_adds_nothing(tmp_path: Path) -> None:
    root = _tree(tmp_path, {**BASE, "app/entry.py": ""})

    files = module_closure(root, ["app.entry"], lazy_packages=["app.backends.gcp"])

    assert files == ["app/__init__.py", "app/entry.py"]


def test_module_closure_data_files_directly_in_included_package_shipped(tmp_path: Path) -> None:
    root = _tree(tmp_path, {**BASE, "app/entry.py": "from app.core import sql\n"})
    (root / "app/core/sql/__pycache__").mkdir()
    (root / "app/core/sql/__pycache__/__init__.cpython-311.pyc").write_bytes(b"\0")
    (root / "app/core/sql/stale.pyc").write_bytes(b"\0")

    files = module_closure(root, ["app.entry"])

    assert {"app/core/sql/query.sql", "app/core/sql/notes.md"} <= set(files)
    # Only files sitting directly in the package: not its subdirectories, not bytecode.
    assert "app/core/sql/nested/extra.sql" not in files
    assert not [f for f in files if f.endswith(".pyc") or "__pycache__" in f]


def test_module_closure_result_sorted_posix_and_repo_relative(tmp_path: Path) -> None:
    root = _tree(tmp_path, {**BASE, "app/entry.py": "from app.core import sql, util, deep\n"})

    files = module_closure(root, ["app.entry"])

    assert files == sorted(files)
    assert all(not f.startswith("/") and "\\" not in f and (root / f).is_file() for f in files)


def test_module_closure_unresolvable_import_raises_naming_file_and_line(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {**BASE, "app/entry.py": "import os\n\n\ndef f():\n    from app.core.gone import X\n"},
    )

    with pytest.raises(ValueError, match=r"app/entry\.py:5: from app\.core\.gone import X"):
        module_closure(root, ["app.entry"])


def test_module_closure_unresolvable_plain_import_raises_naming_file_and_line(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path, {**BASE, "app/entry.py": "import app.core.gone\n"})

    with pytest.raises(ValueError, match=r"app/entry\.py:1: import app\.core\.gone"):
        module_closure(root, ["app.entry"])


def test_module_closure_missing_entry_module_raises(tmp_path: Path) -> None:
    root = _tree(tmp_path, BASE)

    with pytest.raises(ValueError, match="entry module 'app.nope'"):
        module_closure(root, ["app.nope"])


def test_module_closure_entry_outside_package_raises(tmp_path: Path) -> None:
    root = _tree(tmp_path, BASE)

    with pytest.raises(ValueError, match="not in package 'app'"):
        module_closure(root, ["tests.whatever"])


def test_module_closure_import_cycle_terminates(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            **BASE,
            "app/a.py": "from app import b\n",
            "app/b.py": "from app import a\n",
        },
    )

    assert module_closure(root, ["app.a"]) == ["app/__init__.py", "app/a.py", "app/b.py"]


def test_package_modules_lists_direct_modules_only(tmp_path: Path) -> None:
    root = _tree(tmp_path, {**BASE, "app/dags/__init__.py": "", "app/dags/one.py": "",
                            "app/dags/two.py": "", "app/dags/helpers/x.py": ""})  # fmt: skip

    assert package_modules(root, "app.dags") == ["app.dags", "app.dags.one", "app.dags.two"]
    assert package_modules(root, "app.missing") == []


def test_module_closure_namespace_package_module_and_its_data_included(tmp_path: Path) -> None:
    # app/function has no __init__.py, as in the repository.
    root = _tree(
        tmp_path,
        {**BASE, "app/function/main.py": "", "app/function/requirements.txt": "flask\n"},
    )

    assert module_closure(root, ["app.function.main"]) == [
        "app/__init__.py",
        "app/function/main.py",
        "app/function/requirements.txt",
    ]


def test_module_closure_name_from_namespace_package_raises(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {**BASE, "app/function/main.py": "", "app/entry.py": "from app.function import predict\n"},
    )

    with pytest.raises(ValueError, match=r"app/entry\.py:1: from app\.function import predict"):
        module_closure(root, ["app.entry"])
