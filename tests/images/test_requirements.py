"""The images' requirements: generated from uv.lock, and exactly what their code imports."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from images import IMAGES, ImageSpec
from images.requirements import TARGET_ENVIRONMENT, Lock, generate, norm

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
# Loaded only because another requirement finds it installed in this venv (each behind a
# try/except ImportError); the images do without. tests/images/test_isolated_env.py runs
# the images' code in venvs holding only their pins.
OPTIONAL = {
    "scikit-learn": "lightgbm.compat, for its sklearn API",
    "joblib": "scikit-learn's",
    "threadpoolctl": "scikit-learn's",
    "psutil": "loaded by scikit-learn's or lightgbm's optional helpers",
    "rich": "likewise",
    "pyarrow": "pandas.compat, for Arrow-backed dtypes",
    "grpcio": "google.cloud._helpers and google.api_core, for gRPC transports",
    "grpcio-status": "grpcio's",
    "google-cloud-bigquery-storage": "BigQuery's read API; the warehouse asks for none",
    "db-dtypes": "BigQuery's to_dataframe dtypes; the warehouse reads Arrow",
    "pandas-gbq": "BigQuery's pandas helpers",
    "tqdm": "BigQuery's progress bars",
    "mypy-extensions": "sqlglot.helper's typing",
    "blinker": "oauthlib.signals",
    "cloudpickle": "pyarrow pickles through it when present",
    **dict.fromkeys(
        ("aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict"),
        "aiohttp, loaded by asyncio transports only when present",
    ),
    **dict.fromkeys(("propcache", "yarl"), "aiohttp's, likewise"),
    "opentelemetry-instrumentation": "grpc's tracing hooks, loaded only when present",
    "wrapt": "opentelemetry-instrumentation's",
    "chardet": "requests detects encodings with it only when present",
}


def _pins(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a pip requirements file with --hash options."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.replace("\\\n", " ")):
        block = "\n".join(ln for ln in block.splitlines() if not ln.lstrip().startswith("#"))
        if not block.strip():
            continue
        spec, *options = block.split("--hash=")
        req = Requirement(spec.strip())
        if req.marker is not None and not req.marker.evaluate(dict(TARGET_ENVIRONMENT)):
            continue
        (version,) = [s.version for s in req.specifier]
        pins[norm(req.name)] = (version, frozenset(o.split()[0] for o in options))
    return pins


@cache
def _owners() -> dict[Path, str]:
    return {
        Path(str(dist.locate_file(f))).resolve(): norm(dist.metadata["Name"])
        for dist in metadata.distributions()
        for f in dist.files or []
        if str(f).endswith((".py", ".so"))
    }


def _distribution_of(dotted: str) -> str | None:
    """The installed distribution providing module ``dotted`` (or its longest module prefix)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            return _owners().get(Path(spec.origin).resolve())
    return None


def _imported_modules(spec: ImageSpec) -> set[str]:
    """Dotted names of every third-party import in the image's code, anywhere in a file."""
    found: set[str] = set()
    for rel in spec.code_files(ROOT):
        if not rel.endswith(".py"):
            continue
        for node in ast.walk(ast.parse((ROOT / rel).read_bytes())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found |= {f"{node.module}.{a.name}" for a in node.names}
    top = {m.split(".")[0] for m in found}
    stdlib = set(sys.stdlib_module_names) | {"__future__", "app"}
    return {m for m in found if m.split(".")[0] in top - stdlib}


def test_requirements_files_equal_the_generators_output_from_uv_lock() -> None:
    generated = generate(ROOT)
    for rel, text in generated.items():
        assert (ROOT / rel).read_text() == text, f"{rel} is stale: python -m images.requirements"
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "images").glob("*requirements.txt")}
    assert on_disk == set(generated)


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_image_distributions_are_exactly_what_its_code_imports(spec: ImageSpec) -> None:
    imported = {_distribution_of(m) for m in _imported_modules(spec)}
    assert None not in imported, sorted(
        m for m in _imported_modules(spec) if not _distribution_of(m)
    )

    assert imported == set(spec.distributions)


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_requirements_cover_every_module_the_image_code_loads(spec: ImageSpec) -> None:
    # Import every module of the closure (the steps' function-level imports included,
    # through the modules they name) and KFP's executor, in a fresh interpreter.
    modules = sorted(
        {
            rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            for rel in spec.code_files(ROOT)
            if rel.endswith(".py") and not rel.endswith("__main__.py")
        }
        | {m for m in _imported_modules(spec) if importlib.util.find_spec(m.split(".")[0])}
    )
    if "kfp" in spec.distributions:
        modules.append("kfp.dsl.executor_main")
    probe = (
        "import importlib, json, sys\n"
        "before = set(sys.modules)\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name != name: raise\n"  # `from pkg import Name`: not a module
        "        importlib.import_module(name.rpartition('.')[0])\n"
        "files = [getattr(sys.modules[m], '__file__', None) for m in set(sys.modules) - before]\n"
        "print(json.dumps(sorted(f for f in files if f)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = {Path(f).resolve() for f in json.loads(out.stdout.strip().splitlines()[-1])}
    third_party = {_owners()[f] for f in loaded if f in _owners()} - {"fraud-mlops"} - set(OPTIONAL)
    assert third_party, "the probe found no third-party imports at all"

    pinned = set(_pins((ROOT / spec.requirements).read_text()))
    assert not third_party - pinned, f"{spec.requirements} misses {sorted(third_party - pinned)}"


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_requirements_are_complete_for_pip_no_deps_on_the_platform(spec: ImageSpec) -> None:
    # What `pip check` in the image verifies: each pin's own requirements, on CPython 3.11
    # linux/amd64, are pinned too (installed with --no-deps, nothing else arrives).
    pins = _pins((ROOT / spec.requirements).read_text())
    missing = set()
    for name, (version, _) in pins.items():
        assert metadata.version(name) == version, name  # the venv is uv.lock's
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            env = {**TARGET_ENVIRONMENT, "extra": ""}
            holds = req.marker is None or req.marker.evaluate(env)
            if holds and norm(req.name) not in pins:
                missing.add(f"{norm(req.name)} (for {name})")
    assert not missing, sorted(missing)


@pytest.mark.skipif(not UV.is_file(), reason="uv is not in .tools/bin (make env installs it)")
def test_requirements_pins_and_hashes_equal_uv_export() -> None:
    exported = subprocess.run(
        [
            str(UV),
            "export",
            "--locked",
            "--offline",
            "--no-dev",
            "--no-emit-project",
            "--all-extras",
            "--format",
            "requirements-txt",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    locked = _pins(exported)
    for spec in IMAGES:
        files = [spec.requirements, *([spec.build_requirements] if spec.build_requirements else [])]
        for rel in files:
            for name, pin in _pins((ROOT / rel).read_text()).items():
                assert locked.get(name) == pin, f"{rel}: {name}"


_LOCK = """
version = 1
[[package]]
name = "app-a"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "b", extra = ["fast"] },
    { name = "winonly", marker = "sys_platform == 'win32'" },
]
wheels = [{ url = "https://x/app_a-1.0-py3-none-any.whl", hash = "sha256:aa" }]

[[package]]
name = "b"
version = "2.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://x/b-2.0.tar.gz", hash = "sha256:bb" }
[package.optional-dependencies]
fast = [{ name = "c" }]

[[package]]
name = "c"
version = "3.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://x/c-3.0-cp311-cp311-win_amd64.whl", hash = "sha256:cc" }]

[[package]]
name = "winonly"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
"""


def test_lock_closure_follows_extras_drops_other_platforms_and_flags_sdists() -> None:
    pins = {p.name: p for p in Lock(_LOCK).closure(["App_A"])}

    assert sorted(pins) == ["app-a", "b", "c"]
    assert pins["b"].via == ("app-a",) and pins["c"].via == ("b",)
    assert pins["app-a"].has_wheel and not pins["b"].has_wheel
    assert not pins["c"].has_wheel  # a Windows wheel does not fit linux/amd64
    assert pins["b"].hashes == ("sha256:bb",)


def test_target_environment_is_on_the_locks_current_fork() -> None:
    assert Marker("python_full_version >= '3.11.3'").evaluate(dict(TARGET_ENVIRONMENT))
