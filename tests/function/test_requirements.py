"""The function's requirements.txt covers what it imports and follows uv.lock."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "app" / "function" / "requirements.txt"

# Files of every module that importing the function loads (module-level imports).
_IMPORTED = """
import json, sys
before = set(sys.modules)
import app.function.main  # noqa: F401
# What the function loads on GCP, through the composition root, on its first request.
import app.backends.gcp.secret_manager_card_key  # noqa: F401
import app.backends.gcp.vertex_feature_store  # noqa: F401
from google.cloud import aiplatform_v1, secretmanager  # noqa: F401
files = [getattr(sys.modules[m], "__file__", None) for m in set(sys.modules) - before]
print(json.dumps(sorted(f for f in files if f)))
"""
# Imported only because another requirement finds it installed (optional imports).
OPTIONAL = {
    "cloudpickle": "pyarrow pickles through it when present",
    # aiplatform's asyncio REST transports and google-auth's aio transport load aiohttp
    # (and it its own dependencies) only when it is installed; the function uses neither.
    **dict.fromkeys(
        ("aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict"),
        "aiohttp, loaded by asyncio transports only when present",
    ),
    **dict.fromkeys(("propcache", "yarl"), "aiohttp's, likewise"),
    "opentelemetry-instrumentation": "grpc's tracing hooks, loaded only when present",
    "wrapt": "opentelemetry-instrumentation's",
    "chardet": "requests detects encodings with it only when present",
    "setproctitle": "gunicorn names its processes with it only when present",
}


def _requirements() -> list[Requirement]:
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines()]
    return [Requirement(ln) for ln in lines if ln and not ln.startswith("#")]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: list[str]) -> set[str]:
    """Installed distributions reachable from ``roots`` through their requirements."""
    seen: set[str] = set()
    todo = [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen


def test_requirements_cover_every_module_the_function_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTED], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = {Path(f).resolve() for f in json.loads(out.stdout.strip().splitlines()[-1])}
    # Map by file, not by top-level name: "google" is a namespace shared by many packages.
    owner = {
        Path(str(dist.locate_file(f))).resolve(): _norm(dist.metadata["Name"])
        for dist in metadata.distributions()
        for f in dist.files or []
        if str(f).endswith((".py", ".so"))
    }
    third_party = {owner[f] for f in loaded if f in owner} - {"fraud-mlops"} - set(OPTIONAL)
    assert third_party, "the probe found no third-party imports at all"
    missing = third_party - _closure([r.name for r in _requirements()])
    assert not missing, f"app/function/requirements.txt misses {sorted(missing)}"


def test_requirements_pins_match_uv_lock() -> None:
    locked = {
        _norm(pkg["name"]): pkg["version"]
        for pkg in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    }
    for req in _requirements():
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req.name} must be pinned"
        assert locked[_norm(req.name)] == spec.version, req.name
