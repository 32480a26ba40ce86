"""Each image's pinned, hashed requirements, generated from ``uv.lock``.

An image installs exactly the distributions its code imports (:attr:`ImageSpec.distributions`)
and their dependencies as ``uv.lock`` resolved them, for the image's platform (CPython
3.11 on linux/amd64), with every artifact hash the lock records, so the image builds with
``pip install --require-hashes --no-deps`` and holds the versions the tests ran on. The
walk reads the lock file itself (``uv export`` cannot cut the lock down to a subset of
the project's dependencies); tests/images/ checks its output against ``uv export``.

``python -m images.requirements`` rewrites ``images/*-requirements.txt``; ``--check``
only compares, and exits 1 naming each file that is out of date.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from images import IMAGES

ROOT = Path(__file__).resolve().parents[1]

# The images' interpreter and platform (python:3.11-slim on linux/amd64), as PEP 508
# markers see it. The patch level only has to sit on the right side of the lock's
# forks (``python_full_version >= '3.11.3'``).
TARGET_ENVIRONMENT: Mapping[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.13",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.13",
    "python_version": "3.11",
    "sys_platform": "linux",
}

# The wheel tags pip accepts there (python:3.11-slim is Debian with glibc 2.36).
_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
_PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
_TARGET_TAGS = frozenset(
    [
        *cpython_tags((3, 11), platforms=_PLATFORMS),
        *compatible_tags((3, 11), "cp311", platforms=_PLATFORMS),
    ]
)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]  # "sha256:..." of every wheel and sdist the lock lists
    via: tuple[str, ...]  # who needs it: requirers, or "(imported)" for a root
    has_wheel: bool = True  # False: pip builds it from its sdist


class Lock:
    """``uv.lock``'s packages and their dependency edges, for one environment."""

    def __init__(self, text: str, environment: Mapping[str, str] = TARGET_ENVIRONMENT) -> None:
        data = tomllib.loads(text)
        self.environment = dict(environment)
        self.packages: dict[str, list[dict[str, Any]]] = {}
        for package in data["package"]:
            self.packages.setdefault(norm(package["name"]), []).append(package)

    def _marker_holds(self, marker: str | None, extra: str = "") -> bool:
        return marker is None or Marker(marker).evaluate({**self.environment, "extra": extra})

    def package(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The lock's entry for ``name`` (the one at ``version`` where the lock forks)."""
        candidates = self.packages.get(norm(name))
        if not candidates:
            raise KeyError(f"{name} is not in uv.lock")
        if version is not None:
            candidates = [p for p in candidates if p["version"] == version]
        elif len(candidates) > 1:
            candidates = [
                p
                for p in candidates
                if any(self._marker_holds(m) for m in p.get("resolution-markers", [None]))
            ]
        if len(candidates) != 1:
            raise KeyError(f"uv.lock has {len(candidates)} matching entries for {name}")
        return candidates[0]

    def _edges(self, package: dict[str, Any], extras: Iterable[str]) -> list[dict[str, Any]]:
        edges = list(package.get("dependencies", []))
        for extra in extras:
            edges += package.get("optional-dependencies", {}).get(extra, [])
        return [e for e in edges if self._marker_holds(e.get("marker"))]

    def closure(self, roots: Iterable[str]) -> list[Pin]:
        """Every package ``roots`` need on the target, sorted by name."""
        wanted: dict[tuple[str, str], set[str]] = {}  # (name, version) -> extras asked for
        via: dict[tuple[str, str], set[str]] = {}
        todo: list[tuple[dict[str, Any], frozenset[str], str]] = []
        for root in roots:
            todo.append((self.package(root), frozenset(), "(imported)"))
        while todo:
            package, extras, requirer = todo.pop()
            key = (norm(package["name"]), package["version"])
            via.setdefault(key, set()).add(requirer)
            seen = wanted.get(key)
            if seen is not None and extras <= seen:
                continue
            wanted[key] = (seen or set()) | extras
            for edge in self._edges(package, extras):
                dep = self.package(edge["name"], edge.get("version"))
                todo.append((dep, frozenset(edge.get("extra", [])), key[0]))
        pins = []
        for name, version in sorted(wanted):
            entry = self.package(name, version)
            if "registry" not in entry["source"]:
                raise ValueError(f"{name} comes from {entry['source']}, not a package index")
            artifacts = [*entry.get("wheels", []), *([entry["sdist"]] if "sdist" in entry else [])]
            pins.append(
                Pin(
                    name=name,
                    version=version,
                    hashes=tuple(sorted(a["hash"] for a in artifacts)),
                    via=tuple(sorted(via[(name, version)])),
                    has_wheel=any(self._wheel_fits(w["url"]) for w in entry.get("wheels", [])),
                )
            )
        return pins

    @staticmethod
    def _wheel_fits(url: str) -> bool:
        *_, tags = parse_wheel_filename(url.rsplit("/", 1)[-1])
        return bool(set(tags) & _TARGET_TAGS)


def render(title: str, dockerfile: str, pins: Iterable[Pin]) -> str:
    lines = [
        f"# {title}: generated by `python -m images.requirements` from uv.lock",
        "# (CPython 3.11, linux/amd64); do not edit. Installed with",
        f"# pip install --require-hashes --no-deps ({dockerfile}).",
    ]
    for pin in pins:
        lines.append(f"{pin.name}=={pin.version} \\")
        lines += [f"    --hash={h} \\" for h in pin.hashes[:-1]]
        lines.append(f"    --hash={pin.hashes[-1]}")
        lines.append(f"    # via {', '.join(pin.via)}")
    return "\n".join(lines) + "\n"


def generate(root: Path = ROOT) -> dict[str, str]:
    """Repository path -> contents, for every image's requirements files.

    Raises ValueError for an image that needs an sdist built but names no build backend.
    """
    lock = Lock((root / "uv.lock").read_text())
    files: dict[str, str] = {}
    for spec in IMAGES:
        pins = lock.closure(spec.distributions)
        sdists = [p.name for p in pins if not p.has_wheel]
        if sdists and spec.build_requirements is None:
            raise ValueError(
                f"{spec.name}: {', '.join(sdists)} have no linux/amd64 wheel; name the build "
                "backend in the ImageSpec's build_distributions"
            )
        files[spec.requirements] = render(
            f"The {spec.name} image's requirements", spec.dockerfile, pins
        )
        if spec.build_requirements is not None:
            build_pins = lock.closure(spec.build_distributions)
            files[spec.build_requirements] = render(
                f"The {spec.name} image's build backend (for {', '.join(sdists) or 'sdists'})",
                spec.dockerfile,
                build_pins,
            )
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = args == ["--check"]
    if args and not check:
        print("usage: python -m images.requirements [--check]", file=sys.stderr)
        return 2
    stale = []
    for rel, text in generate(ROOT).items():
        path = ROOT / rel
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(rel)
        if not check:
            path.write_text(text)
    for rel in stale:
        print(f"{rel}: {'out of date with uv.lock' if check else 'written'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
