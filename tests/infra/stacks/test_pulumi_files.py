"""Pulumi.yaml's schema and the stack files agree with stacks/config.py."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic_core import PydanticUndefined

from stacks.config import NAMESPACE, config_keys
from stacks.plan import parse, stack_config
from tests.infra.conftest import ROOT

_TYPES = {bool: "boolean", int: "integer", str: "string", float: "string"}


def _project() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_pulumi_yaml_runs_python_program_in_stacks() -> None:
    project = _project()

    assert project["name"] == NAMESPACE
    assert project["runtime"]["name"] == "python"
    assert project["main"] == "stacks/"
    assert (ROOT / "stacks" / "__main__.py").is_file()


def test_pulumi_yaml_declares_exactly_the_keys_the_program_reads() -> None:
    declared = set(_project()["config"])

    assert declared == {k for k, _ in config_keys()} - {"labels"}


def test_pulumi_yaml_every_key_has_description_and_matching_default() -> None:
    schema = _project()["config"]
    fields = dict(config_keys())
    for key, spec in schema.items():
        assert spec.get("description"), key
        info = fields[key]
        default = info.get_default(call_default_factory=True)
        if info.default is PydanticUndefined and info.default_factory is None:
            assert "default" not in spec, f"{key} is required; it must not have a default"
            continue
        declared = spec["default"]
        if isinstance(default, tuple):
            assert declared == list(default), key
        elif isinstance(default, float):
            assert float(declared) == default, key
        else:
            assert declared == default, key


def test_pulumi_yaml_types_match_field_types() -> None:
    schema = _project()["config"]
    fields = dict(config_keys())
    for key, spec in schema.items():
        annotation = fields[key].annotation
        if spec["type"] == "array":
            assert str(annotation).startswith("tuple"), key
        elif annotation in _TYPES:
            assert spec["type"] == _TYPES[annotation], key
        else:  # Literal choices travel as strings
            assert spec["type"] == "string", key


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_file_parses_and_uses_only_declared_keys(stack: str) -> None:
    raw = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    known = {f"{NAMESPACE}:{k}" for k, _ in config_keys()}

    assert set(raw) <= known
    assert parse(stack_config(ROOT, stack)).environment == stack


def test_prod_differs_from_dev_where_production_should() -> None:
    dev = parse(stack_config(ROOT, "dev"))
    prod = parse(stack_config(ROOT, "prod"))

    assert prod.deletion_protection and not dev.deletion_protection
    assert prod.feature_store.max_nodes > dev.feature_store.max_nodes
    assert prod.feature_store.min_nodes > dev.feature_store.min_nodes
    assert prod.function.min_instances > 0 == dev.function.min_instances
    assert prod.endpoint.canary_traffic_percent > dev.endpoint.canary_traffic_percent
    assert prod.composer.environment_size != dev.composer.environment_size
    assert prod.kms_key is not None and prod.composer.private_ip
