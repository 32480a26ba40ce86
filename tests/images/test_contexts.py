"""Each image's build context, file by file, and the Dockerfiles that build from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from images import IMAGES, SERVING, TRAINER, ImageSpec, stage_context

ROOT = Path(__file__).resolve().parents[2]

SERVING_FILES = [
    "app/__init__.py",
    "app/core/__init__.py",
    "app/core/errors.py",
    "app/core/model/__init__.py",
    "app/core/model/artifact.py",
    "app/core/model/features.py",
    "app/core/schema.py",
    "app/serving/__init__.py",
    "app/serving/__main__.py",
    "app/serving/artifact_source.py",
    "app/serving/server.py",
    "images/serving-requirements.txt",
]
TRAINER_FILES_BUT_GCP_BACKENDS = [
    "app/__init__.py",
    "app/backends/__init__.py",
    "app/backends/_process.py",
    "app/core/__init__.py",
    "app/core/config.py",
    "app/core/errors.py",
    "app/core/lifetime.py",
    "app/core/model/__init__.py",
    "app/core/model/artifact.py",
    "app/core/model/evaluate.py",
    "app/core/model/features.py",
    "app/core/model/gate.py",
    "app/core/model/split.py",
    "app/core/model/threshold.py",
    "app/core/model/train.py",
    "app/core/ports.py",
    "app/core/records.py",
    "app/core/schema.py",
    "app/core/sql/__init__.py",
    "app/core/sql/latest_card_features.sql",
    "app/core/sql/training.sql",
    "app/core/step_report.py",
    "app/pipeline/__init__.py",
    "images/trainer-build-requirements.txt",
    "images/trainer-requirements.txt",
]
_DIGEST_PINNED = re.compile(r"^[a-z0-9./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$")


def test_serving_context_is_exactly_the_servers_closure() -> None:
    assert SERVING.context_files(ROOT) == SERVING_FILES


def test_trainer_context_is_the_steps_closure_with_the_gcp_backends_whole() -> None:
    # Step modules and GCP backends are being added by others: each of them ships, whole.
    steps = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("app/pipeline/steps/*.py"))
    gcp = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("app/backends/gcp/*.py"))
    files = TRAINER.context_files(ROOT)

    assert set(steps) <= set(files) and set(gcp) <= set(files)
    rest = [f for f in files if f not in steps and f not in gcp]
    assert rest == TRAINER_FILES_BUT_GCP_BACKENDS


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_image_context_never_holds_the_laptop_platform_tests_or_local_backends(
    spec: ImageSpec,
) -> None:
    for path in spec.context_files(ROOT):
        assert not path.startswith(
            ("app/local/", "app/cli/", "app/backends/local/", "tests/", "benchmarks/")
        ), path
        assert not path.startswith(("stacks/", "components/", "policy/")), path


def test_serving_context_holds_no_backend_and_no_pipeline() -> None:
    assert not [f for f in SERVING.context_files(ROOT) if f.startswith(("app/backends", "app/pip"))]


def test_stage_context_copies_exactly_the_files_and_is_content_addressed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for rel in [*SERVING_FILES, "app/local/demo.py"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((ROOT / rel).read_bytes())

    first = stage_context(SERVING, root, tmp_path / "build")
    again = stage_context(SERVING, root, tmp_path / "build")
    (root / "app/serving/server.py").write_text((root / "app/serving/server.py").read_text() + "#")
    changed = stage_context(SERVING, root, tmp_path / "build")

    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == SERVING_FILES
    assert again == first and changed != first
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == sorted(
        [first.name, changed.name]
    )


def test_images_cli_lists_and_stages_a_context(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "images", "files", "serving"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    staged = subprocess.run(
        [sys.executable, "-m", "images", "stage", "serving", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    unknown = subprocess.run(
        [sys.executable, "-m", "images", "files", "nope"], cwd=ROOT, capture_output=True
    )

    assert listed == SERVING_FILES
    assert Path(staged).parent == tmp_path and (Path(staged) / "app/serving/server.py").is_file()
    assert unknown.returncode == 2


# --- the Dockerfiles -----------------------------------------------------------------------


def _instructions(spec: ImageSpec) -> list[tuple[str, str]]:
    text = (ROOT / spec.dockerfile).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_dockerfile_every_base_is_pinned_by_digest(spec: ImageSpec) -> None:
    steps = _instructions(spec)
    args = dict(rest.split("=", 1) for kw, rest in steps if kw == "ARG" and "=" in rest)
    stages = {rest.split()[-1] for kw, rest in steps if kw == "FROM" and " AS " in rest}
    bases = [rest.split()[0] for kw, rest in steps if kw == "FROM"]
    assert bases
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert resolved in stages or _DIGEST_PINNED.match(resolved), base
        assert resolved.startswith(("python:3.11-slim@sha256:", *stages)), resolved


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_dockerfile_copies_only_files_of_its_context(spec: ImageSpec) -> None:
    files = spec.context_files(ROOT)
    sources = []
    for keyword, rest in _instructions(spec):
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources += [s for s in rest.split()[:-1] if not s.startswith("--")]
    assert sources
    for source in sources:
        if source.endswith("/"):
            assert any(f.startswith(source) for f in files), source
        else:
            assert source in files, source
    # Every requirements file of the context is installed.
    requirements = [f for f in files if f.startswith("images/")]
    assert sorted(requirements) == sorted(s for s in sources if s.startswith("images/"))


@pytest.mark.parametrize("spec", IMAGES, ids=lambda s: s.name)
def test_dockerfile_installs_hash_checked_at_build_and_runs_as_non_root(spec: ImageSpec) -> None:
    steps = _instructions(spec)
    final = len(steps) - 1 - [kw for kw, _ in steps][::-1].index("FROM")
    installs = [rest for kw, rest in steps[:final] if kw == "RUN" and "pip install" in rest]
    assert installs
    for run in installs:
        for command in run.split("&&"):
            if "pip install" in command:
                assert "--require-hashes" in command and "--no-deps" in command, command
    # The runtime stage installs nothing with pip, and removes pip.
    runtime = steps[final:]
    assert not [r for kw, r in runtime if kw == "RUN" and "pip install" in r]
    assert any("pip uninstall" in r for kw, r in runtime if kw == "RUN")
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_serving_dockerfile_runs_the_server_from_wheels_only() -> None:
    steps = _instructions(SERVING)
    assert ("ENTRYPOINT", '["python", "-m", "app.serving"]') in steps
    assert any("--only-binary=:all:" in rest for kw, rest in steps if kw == "RUN")
