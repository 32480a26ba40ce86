"""docs/openapi/function.yaml against the handler: what it documents is what it answers.

The handler runs in process (functions-framework's Flask app, its test client), so each
status, the rarely reached ones too (409, 500), is provoked on purpose.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from types import ModuleType

import functions_framework
import jsonschema
import pytest
from flask.testing import FlaskClient as Client
from schemathesis.specs.openapi.definitions import OPENAPI_31
from werkzeug.test import TestResponse

from app.core import cards
from app.core.config import CONFIG_ENV, RuntimeConfig
from app.core.errors import ConflictError
from app.local.server import FUNCTION_SOURCE
from tests.function.conftest import ServedHome
from tests.function.http_support import (
    all_documented_statuses,
    document,
    documented_answers,
    documented_statuses,
    operation_for,
    operations,
    validate_response,
)

UNKNOWN = "4242424242424242"
Observed = list[tuple[str, str, int]]


def _app(cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch) -> tuple[Client, ModuleType]:
    monkeypatch.setenv(CONFIG_ENV, cfg.to_json())
    app = functions_framework.create_app(target="predict", source=str(FUNCTION_SOURCE))
    import main as function_main  # the module functions-framework just loaded

    function_main._scorer.cache_clear()
    return app.test_client(), function_main


@pytest.fixture
def ready(
    served_home: ServedHome, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Client, ModuleType]]:
    client, module = _app(served_home.cfg, monkeypatch)
    yield client, module
    module._scorer.cache_clear()


@pytest.fixture
def unready(cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A home with nothing in it: no key, no store, no model."""
    client, module = _app(cfg, monkeypatch)
    yield client
    module._scorer.cache_clear()


@pytest.fixture(scope="module")
def observed() -> Observed:
    """Every (path, method, status) the tests below saw, for the coverage check."""
    return []


def _check(observed: Observed, resp: TestResponse, path: str, method: str) -> dict:
    """The response validates against the document's entry for its status."""
    doc_path, doc_method = operation_for(path, method)
    assert resp.status_code in documented_statuses(doc_path, doc_method), (
        f"{method} {path} answered {resp.status_code}, undocumented for {doc_method} {doc_path}"
    )
    assert resp.headers["Content-Type"] == "application/json"
    payload = validate_response(
        doc_path, doc_method, resp.status_code, dict(resp.headers), resp.get_data()
    )
    observed.append((doc_path, doc_method, resp.status_code))
    return payload


def test_openapi_document_is_valid_openapi_3_1() -> None:
    # schemathesis ships the OAS 3.1 meta-schema; it is the one it checks documents with.
    jsonschema.validators.validator_for(OPENAPI_31)(OPENAPI_31).validate(document())


def test_openapi_document_lists_every_status_the_handler_has() -> None:
    import app.function.main as handler

    # _error() can only build a status _STATUS names; 200 is the score and readiness.
    assert all_documented_statuses() == set(handler._STATUS) | {200}
    schema = document()["components"]["schemas"]["Error"]["properties"]["error"]
    assert schema["properties"]["code"]["enum"] == sorted(handler._STATUS)
    assert set(schema["properties"]["status"]["enum"]) == set(handler._STATUS.values())


def test_openapi_known_card_is_a_documented_200(
    ready: tuple[Client, ModuleType], served_home: ServedHome, observed: Observed
) -> None:
    client, _ = ready
    resp = client.post("/", json={"card_number": served_home.known_cards[0]})
    assert resp.status_code == 200
    assert _check(observed, resp, "/", "POST")["card"] == cards.mask(served_home.known_cards[0])


def test_openapi_healthz_when_warm_is_a_documented_200(
    ready: tuple[Client, ModuleType], observed: Observed
) -> None:
    client, _ = ready
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert _check(observed, resp, "/healthz", "GET")["status"] == "ready"


@pytest.mark.parametrize(
    ("data", "content_type", "field"),
    [
        (b"{not json", "application/json", "body"),
        (b"\xff\xfe{}", "application/json", "body"),
        (b'{"card_number": ' + b"[" * 2000 + b"]" * 2000 + b"}", "application/json", "body"),
        (b"[1]", "application/json", "body"),
        (b"{}", "application/json", "card_number"),
        (b'{"card_number": 4000001234567899}', "application/json", "card_number"),
        (b'{"card_number": "4000001234567898"}', "application/json", "card_number"),
        (b'{"card_number": "4000001234567899", "cvv": "1"}', "application/json", "cvv"),
        (b'{"card_number": "4000001234567899", "4000001234567899": 1}', "application/json", "body"),
        (b'{"card_number": "x"}', "application/json; charset=UTF-8", "card_number"),
    ],
)
def test_openapi_bad_body_is_a_documented_400(
    ready: tuple[Client, ModuleType],
    observed: Observed,
    data: bytes,
    content_type: str,
    field: str,
) -> None:
    client, _ = ready
    resp = client.post("/", data=data, content_type=content_type)
    assert resp.status_code == 400
    assert _check(observed, resp, "/", "POST")["error"]["field"] == field
    assert b"4000001234567899" not in resp.get_data()


@pytest.mark.parametrize(
    "path", ["/nope", "/favicon.ico", "/robots.txt", "/healthz/", "/4000001234567899"]
)
def test_openapi_unknown_path_is_a_documented_404(
    ready: tuple[Client, ModuleType], observed: Observed, path: str
) -> None:
    client, _ = ready
    resp = client.post(path, json={"card_number": UNKNOWN})
    assert resp.status_code == 404
    _check(observed, resp, path, "POST")
    assert b"4000001234567899" not in resp.get_data()


def test_openapi_unknown_card_is_a_documented_404(
    ready: tuple[Client, ModuleType], observed: Observed
) -> None:
    client, _ = ready
    resp = client.post("/", json={"card_number": UNKNOWN})
    assert resp.status_code == 404
    _check(observed, resp, "/", "POST")
    assert UNKNOWN not in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("PUT", "/"),
        ("DELETE", "/"),
        ("OPTIONS", "/"),
        ("POST", "/healthz"),
        ("DELETE", "/healthz"),
    ],
)
def test_openapi_wrong_method_is_a_documented_405(
    ready: tuple[Client, ModuleType], observed: Observed, method: str, path: str
) -> None:
    client, _ = ready
    resp = client.open(path, method=method)
    assert resp.status_code == 405
    _check(observed, resp, path, method)


def test_openapi_declared_oversize_body_is_a_documented_413(
    ready: tuple[Client, ModuleType], observed: Observed
) -> None:
    client, _ = ready
    resp = client.post("/", json={"card_number": "4" * 5000})
    assert resp.status_code == 413
    _check(observed, resp, "/", "POST")


def test_openapi_chunked_oversize_body_is_a_documented_413(
    ready: tuple[Client, ModuleType], observed: Observed
) -> None:
    client, _ = ready
    body = json.dumps({"card_number": "4" * 5000}).encode()
    # What gunicorn hands over for a chunked request: no usable Content-Length, a
    # de-chunked stream that ends by itself (wsgi.input_terminated).
    resp = client.post(
        "/",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert resp.status_code == 413
    _check(observed, resp, "/", "POST")


@pytest.mark.parametrize(
    ("content_type", "headers"),
    [
        ("text/plain", {}),
        ("application/x-www-form-urlencoded", {}),
        ("application/json; charset=latin-1", {}),
        ("application/json; charset=utf-16", {}),
        ("application/json", {"Content-Encoding": "gzip"}),
        ("application/json", {"Content-Encoding": "identity, br"}),
        ("application/json", {"Transfer-Encoding": "gzip, chunked"}),
    ],
)
def test_openapi_unsupported_media_is_a_documented_415(
    ready: tuple[Client, ModuleType],
    observed: Observed,
    content_type: str,
    headers: dict[str, str],
) -> None:
    client, _ = ready
    resp = client.post(
        "/", data=b'{"card_number": "x"}', content_type=content_type, headers=headers
    )
    assert resp.status_code == 415
    _check(observed, resp, "/", "POST")


def test_openapi_backend_conflict_is_a_documented_409(
    ready: tuple[Client, ModuleType], observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, module = ready

    class Conflicted:
        def score(self, _number: object) -> None:
            raise ConflictError("split changed under us")

    monkeypatch.setattr(module, "_shared_scorer", Conflicted)
    resp = client.post("/", json={"card_number": UNKNOWN})
    assert resp.status_code == 409
    _check(observed, resp, "/", "POST")


@pytest.mark.parametrize("where", ["scorer", "outside the try"])
def test_openapi_bug_is_a_documented_500_without_detail(
    ready: tuple[Client, ModuleType],
    observed: Observed,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    client, module = ready

    def boom(*_args: object) -> None:
        raise RuntimeError(f"secret detail {UNKNOWN}")

    if where == "scorer":
        monkeypatch.setattr(module, "_shared_scorer", boom)
    else:
        # Raised outside the function's own handling: Flask's error handler answers.
        monkeypatch.setattr(module, "_parse_body", boom)
    resp = client.post("/", json={"card_number": UNKNOWN})
    assert resp.status_code == 500
    payload = _check(observed, resp, "/", "POST")
    assert payload["error"]["message"] == "internal error"
    assert "secret" not in resp.get_data(as_text=True)


def test_openapi_missing_dependencies_are_documented_503s_with_retry_after(
    unready: Client, observed: Observed
) -> None:
    for method, path in (("POST", "/"), ("GET", "/healthz")):
        resp = unready.open(path, method=method, json={"card_number": UNKNOWN})
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "1"
        _check(observed, resp, path, method)


def test_openapi_every_documented_status_was_provoked(observed: Observed) -> None:
    # Runs last in this module: the tests above together reach every documented answer.
    if not observed:
        pytest.skip("needs the rest of this module to have run")
    seen = {(p, m if m in operations(p) else "*", c) for p, m, c in observed}
    # A 500 on readiness would need a bug in a dozen lines that catch everything; it is
    # documented because any route can fail, not because a test can make it fail.
    unreachable = {("/healthz", "get", 500)}
    missing = documented_answers() - unreachable - seen
    assert not missing, sorted(missing)
