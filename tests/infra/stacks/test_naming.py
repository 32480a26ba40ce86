"""Names the stack derives from its config alone."""

from __future__ import annotations

import pytest

from components.serving_endpoint import is_endpoint_id
from stacks.naming import Names
from stacks.plan import parse, stack_config
from tests.infra.conftest import ROOT


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_names_endpoint_is_an_id_vertex_accepts(stack: str) -> None:
    names = Names.of(parse(stack_config(ROOT, stack)))

    assert names.endpoint == f"fraud-mlops-{stack}-serving"
    assert is_endpoint_id(names.endpoint)
