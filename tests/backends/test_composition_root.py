"""The composition root: every config kind maps to an implementation or fails fast."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from app import backends
from app.backends import IMPLEMENTATIONS, PENDING, ROLE_SECTIONS, Backends
from app.core import config as c
from app.core.errors import BackendUnavailableError
from app.core.ports import Services

APP = Path(__file__).resolve().parents[2] / "app"


def _kinds(section: str) -> set[str]:
    """Every kind the runtime config accepts for one section."""
    annotation = c.RuntimeConfig.model_fields[section].annotation
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation) or (annotation,)
    return {typing.get_args(m.model_fields["kind"].annotation)[0] for m in members}


@pytest.mark.parametrize("role", sorted(ROLE_SECTIONS))
def test_every_config_kind_is_implemented_or_pending(role: str) -> None:
    implemented = set(IMPLEMENTATIONS[role])
    pending = set(PENDING[role])
    assert implemented | pending == _kinds(ROLE_SECTIONS[role])
    assert not implemented & pending


@pytest.mark.parametrize(
    ("role", "kind"), [(r, k) for r, kinds in IMPLEMENTATIONS.items() for k in kinds]
)
def test_every_implementation_imports_and_builds_from_its_section(role: str, kind: str) -> None:
    cls = backends.implementation(role, kind)
    assert callable(getattr(cls, "from_config", None)), cls


def test_local_config_builds_every_role(tmp_path: Path) -> None:
    services: Services = Backends(c.RuntimeConfig.local(tmp_path))
    for role in ROLE_SECTIONS:
        assert getattr(services, role) is getattr(services, role)  # built once, then kept


def test_pending_kind_fails_fast_naming_role_and_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No kind is pending today: make one so, as a kind accepted before its backend is.
    monkeypatch.setitem(IMPLEMENTATIONS, "landing_events", {"local": "unused:Unused"})
    monkeypatch.setitem(PENDING, "landing_events", frozenset({"gcs"}))
    gcs = c.GcsLandingConfig(bucket="landing", subscription="projects/p/subscriptions/s")
    cfg = c.RuntimeConfig.local(tmp_path).model_copy(update={"landing": gcs})

    with pytest.raises(BackendUnavailableError, match="landing_events kind 'gcs'"):
        _ = Backends(cfg).landing_events
    # The other roles are unaffected: each is built on its own, when asked for.
    assert Backends(cfg).online_store is not None


def test_no_config_kind_is_pending() -> None:
    assert {role: kinds for role, kinds in PENDING.items() if kinds} == {}


def test_gcs_config_builds_pubsub_landing_events_on_its_subscriptions_without_a_call(
    tmp_path: Path,
) -> None:
    from app.backends.gcp.pubsub_landing_events import PubSubLandingEvents

    gcs = c.GcsLandingConfig(
        bucket="landing",
        subscription="projects/p/subscriptions/landing-dag",
        topic="projects/p/topics/landing",
        dead_letter_topic="projects/p/topics/landing-dead-letters",
        dead_letter_subscription="projects/p/subscriptions/landing-dag-dead-letters",
    )
    cfg = c.RuntimeConfig.local(tmp_path).model_copy(update={"landing": gcs})

    events = Backends(cfg).landing_events

    assert isinstance(events, PubSubLandingEvents)
    assert events.subscription == "projects/p/subscriptions/landing-dag"
    assert events.dead_letter_subscription == "projects/p/subscriptions/landing-dag-dead-letters"
    # Built lazily: no client (and no credentials lookup) until the first call.
    assert (events._subscriber_client, events._publisher_client) == (None, None)


def test_local_home_never_imports_a_cloud_client(tmp_path: Path) -> None:
    # A fresh interpreter: this test process has imported everything by now.
    code = (
        "import sys\n"
        "from app.backends import Backends, ROLE_SECTIONS\n"
        "from app.core.config import RuntimeConfig\n"
        f"services = Backends(RuntimeConfig.local(__import__('pathlib').Path({str(tmp_path)!r})))\n"
        "for role in ROLE_SECTIONS: getattr(services, role)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    clients = ("google.cloud.bigquery", "google.cloud.aiplatform", "google.cloud.storage")
    clients += ("google.cloud.secretmanager", "google.cloud.pubsub", "google.api_core")
    assert [m for m in done.stdout.split() if m.startswith(clients)] == []


# Names that only a composition root may look at: the kind-specific config classes.
_KIND_CLASSES = {
    name
    for name, obj in vars(c).items()
    if isinstance(obj, type) and issubclass(obj, c._Strict) and "kind" in obj.model_fields
}


def _kind_references(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Name) and node.id in _KIND_CLASSES:
            found.append(f"{path.relative_to(APP.parent)}:{node.lineno} {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in _KIND_CLASSES:
            found.append(f"{path.relative_to(APP.parent)}:{node.lineno} {node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "kind":
            found.append(f"{path.relative_to(APP.parent)}:{node.lineno} .kind")
    return found


def test_no_branching_on_a_config_kind_outside_the_backends() -> None:
    allowed = {
        APP / "core" / "config.py",
        # The automl template runs only on Vertex AI: its first step reads the Vertex
        # sections Google's components take as inputs, and refuses any other config.
        APP / "pipeline" / "steps" / "vertex_settings.py",
    }
    offenders = [
        ref
        for path in sorted(APP.rglob("*.py"))
        if path not in allowed and APP / "backends" not in path.parents
        for ref in _kind_references(path)
    ]
    assert offenders == []


def test_kind_reference_check_catches_an_isinstance_on_a_config_class(tmp_path: Path) -> None:
    sneaky = APP / "core" / "_kind_probe_for_test.py"
    try:
        sneaky.write_text(
            "def f(cfg):\n    return isinstance(cfg.warehouse, DuckDBWarehouseConfig)\n"
        )
        assert _kind_references(sneaky) == [
            "app/core/_kind_probe_for_test.py:2 DuckDBWarehouseConfig"
        ]
    finally:
        sneaky.unlink()


@pytest.mark.parametrize("endpoint_id", ["1234567890", "0123", "Fraud", "fmo-", "-fmo"])
def test_vertex_endpoint_id_vertex_rejects_is_a_config_error(endpoint_id: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="endpoint_id"):
        c.VertexEndpointConfig(project="p", location="us-central1", endpoint_id=endpoint_id)


@pytest.mark.parametrize("endpoint_id", ["123456789", "fraud-mlops-dev-serving"])
def test_vertex_endpoint_id_vertex_accepts_is_valid(endpoint_id: str) -> None:
    assert c.VertexEndpointConfig(project="p", location="l", endpoint_id=endpoint_id)
