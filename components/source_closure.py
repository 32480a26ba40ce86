"""Which files of the app a deployed entry point needs: the closure of its imports.

The function archive and the Composer upload ship this closure instead of whole
directory trees, so code only local runs or the CLI import (``app/local``,
``app/cli``) never reaches GCP, and a module an entry point starts importing is
shipped without anyone editing a list.

The walk reads source with :mod:`ast` and never imports it: the stack must not
need the app's dependencies (Airflow, KFP, GCP clients) to plan. Imports are
followed wherever they appear, module level or inside a function body (the DAG
and the pipeline steps import inside their tasks). What an AST cannot see, a
module loaded by an import-path string, is named as a lazy package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path

_SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_SKIP_SUFFIXES = frozenset({".pyc", ".pyo"})


def module_closure(
    root: Path,
    entry_modules: Sequence[str],
    lazy_packages: Sequence[str] = (),
    package: str = "app",
) -> list[str]:
    """Repo-relative posix paths (sorted) of every file ``entry_modules`` need.

    That is: each entry module's file; every module of ``package`` it imports,
    transitively; every parent package's ``__init__.py``; every module under each
    of ``lazy_packages`` (recursively, and what those import), since a registry
    that imports by string is invisible to the walk; and the non-Python files
    sitting directly in each package directory that holds an included module
    (``app/core/sql/*.sql``). Imports of anything outside ``package`` are
    third-party and ignored. A lazy package that does not exist adds nothing.

    Raises ValueError for an entry module that does not exist, and for an import
    of ``package`` that resolves to no file, naming the importing file and line.
    """
    return _Closure(root, package).collect(entry_modules, lazy_packages)


def package_modules(root: Path, package: str) -> list[str]:
    """Dotted names of the modules directly in ``package``'s directory (its
    ``__init__`` as the package itself); none if the directory does not exist."""
    directory = root.joinpath(*package.split("."))
    if not directory.is_dir():
        return []
    return sorted(
        package if path.name == "__init__.py" else f"{package}.{path.stem}"
        for path in directory.glob("*.py")
        if path.is_file()
    )


class _Closure:
    def __init__(self, root: Path, package: str) -> None:
        self.root = root
        self.package = package
        self.modules: set[Path] = set()  # .py files included so far
        self.package_dirs: set[Path] = set()  # directories whose data files ship

    # --- the walk ----------------------------------------------------------------

    def collect(self, entry_modules: Sequence[str], lazy_packages: Sequence[str]) -> list[str]:
        pending: list[Path] = []
        for dotted in entry_modules:
            self._check_inside(dotted, "entry module")
            path = self._module_file(dotted)
            if path is None:
                raise ValueError(
                    f"entry module {dotted!r}: no {self._rel_stem(dotted)}.py or "
                    f"{self._rel_stem(dotted)}/__init__.py under {self.root}"
                )
            pending += self._add_module(dotted, path)
        for dotted in lazy_packages:
            self._check_inside(dotted, "lazy package")
            for name, path in self._lazy_modules(dotted):
                pending += self._add_module(name, path)
        while pending:
            path = pending.pop()
            for lineno, target, names in self._imports(path):
                for name, file in self._resolve(path, lineno, target, names):
                    pending += self._add_module(name, file)
        return self._files()

    def _add_module(self, dotted: str, path: Path | None) -> list[Path]:
        """Include ``dotted`` (its file, if it has one) and its parent packages;
        return the files not seen before, whose imports are still to follow."""
        new: list[Path] = []
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            prefix = parts[:i]
            directory = self.root.joinpath(*prefix)
            init = directory / "__init__.py"
            if i < len(parts) or path is None or path == init:
                # A package on the way (regular or namespace): its data files ship.
                if directory.is_dir():
                    self.package_dirs.add(directory)
                if init.is_file() and init not in self.modules:
                    self.modules.add(init)
                    new.append(init)
        if path is not None and path not in self.modules:
            self.modules.add(path)
            new.append(path)
        return new

    def _lazy_modules(self, dotted: str) -> Iterable[tuple[str, Path]]:
        directory = self.root.joinpath(*dotted.split("."))
        single = directory.with_suffix(".py")
        if single.is_file():
            yield dotted, single
            return
        if not directory.is_dir():
            return  # not written yet: nothing to ship, and nothing to fail on
        for path in sorted(directory.rglob("*.py")):
            rel = path.relative_to(self.root)
            if _SKIP_DIRS.intersection(rel.parts) or not path.is_file():
                continue
            parts = rel.with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path

    # --- reading imports ----------------------------------------------------------

    def _imports(self, path: Path) -> Iterable[tuple[int, str, tuple[str, ...]]]:
        """(line, module, imported names) for every import in the file, anywhere in
        it; ``names`` is empty for ``import x.y``. Relative imports come back absolute."""
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name, ()
            elif isinstance(node, ast.ImportFrom):
                names = tuple(alias.name for alias in node.names)
                if node.level == 0:
                    yield node.lineno, node.module or "", names
                else:
                    base = self._relative_base(path, node.level, node.lineno)
                    yield node.lineno, f"{base}.{node.module}" if node.module else base, names

    def _relative_base(self, path: Path, level: int, lineno: int) -> str:
        parts = list(path.relative_to(self.root).with_suffix("").parts)
        package = parts[:-1]  # a module's package; for __init__, the package itself
        if level - 1 > len(package) - 1:
            raise ValueError(f"{self._rel(path)}:{lineno}: relative import beyond the top level")
        return ".".join(package[: len(package) - (level - 1)])

    def _resolve(
        self, importer: Path, lineno: int, target: str, names: tuple[str, ...]
    ) -> Iterable[tuple[str, Path | None]]:
        """The modules an import statement loads, as (dotted name, file or None
        for a namespace package). Imports outside the package are skipped."""
        if not self._inside(target):
            return
        if not names:  # import app.a.b
            yield target, self._require(importer, lineno, target)
            return
        missing = [name for name in names if name == "*" or not self._exists(f"{target}.{name}")]
        for name in names:
            if name not in missing:
                yield f"{target}.{name}", self._module_file(f"{target}.{name}")
        if missing:  # from app.a import <names defined in app/a.py or app/a/__init__.py>
            path = self._require(importer, lineno, target, tuple(missing))
            if path is None:  # a namespace package defines no names
                raise ValueError(
                    f"{self._rel(importer)}:{lineno}: from {target} import {', '.join(missing)}: "
                    f"{self._rel_stem(target)}/ has no __init__.py and no module named so"
                )
            yield target, path

    def _require(
        self, importer: Path, lineno: int, dotted: str, names: tuple[str, ...] = ()
    ) -> Path | None:
        if not self._exists(dotted):
            what = f"from {dotted} import {', '.join(names)}" if names else f"import {dotted}"
            stem = self._rel_stem(dotted)
            raise ValueError(
                f"{self._rel(importer)}:{lineno}: {what}: "
                f"no {stem}.py or {stem}/__init__.py under {self.root}"
            )
        return self._module_file(dotted)

    # --- the file system ---------------------------------------------------------------

    def _module_file(self, dotted: str) -> Path | None:
        base = self.root.joinpath(*dotted.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def _exists(self, dotted: str) -> bool:
        # A module, a package, or a namespace package (a directory without __init__).
        return (
            self._module_file(dotted) is not None or self.root.joinpath(*dotted.split(".")).is_dir()
        )

    def _files(self) -> list[str]:
        files = {self._rel(p) for p in self.modules}
        for directory in self.package_dirs:
            for path in directory.iterdir():
                if (
                    path.is_file()
                    and path.suffix != ".py"
                    and path.suffix not in _SKIP_SUFFIXES
                    and not path.name.startswith(".")
                ):
                    files.add(self._rel(path))
        return sorted(files)

    def _inside(self, dotted: str) -> bool:
        return dotted == self.package or dotted.startswith(f"{self.package}.")

    def _check_inside(self, dotted: str, what: str) -> None:
        if not self._inside(dotted):
            raise ValueError(f"{what} {dotted!r} is not in package {self.package!r}")

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def _rel_stem(dotted: str) -> str:
        return dotted.replace(".", "/")
