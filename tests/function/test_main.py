"""The real function under functions-framework's Flask app (no server process needed)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import flask
import functions_framework
import pandas as pd
import pytest

from app.backends import Backends
from app.core import cards
from app.core.config import CONFIG_ENV, LocalEndpointConfig, RuntimeConfig
from app.core.records import traffic_bucket
from app.core.schema import MODEL_FEATURES
from app.local.server import FUNCTION_SOURCE
from tests.function.conftest import deploy_first_model

GOOD = "4000001234567899"


@pytest.fixture
def client(
    cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[flask.testing.FlaskClient]:
    monkeypatch.setenv(CONFIG_ENV, cfg.to_json())
    app = functions_framework.create_app(target="predict", source=str(FUNCTION_SOURCE))
    import main as function_main  # the module functions-framework loaded

    function_main._scorer.cache_clear()
    yield app.test_client()
    function_main._scorer.cache_clear()


def _sync_one_card(cfg: RuntimeConfig, number: str) -> None:
    row = {
        "card_id": cards.card_id(number, Backends(cfg).card_key.key(create=True)),
        "card_masked": cards.mask(number),
        "event_time": 1.0,
        **{f: 0.0 for f in MODEL_FEATURES},
    }
    Backends(cfg).online_store.sync(pd.DataFrame([row]), snapshot_id="snap_0001_x")


def _error(resp) -> dict:  # type: ignore[no-untyped-def]
    assert resp.headers["Content-Type"] == "application/json"
    body = json.loads(resp.data)
    assert "Traceback" not in resp.get_data(as_text=True)
    return body["error"]


def test_predict_get_is_405_with_allow(client: flask.testing.FlaskClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"
    assert _error(resp)["status"] == "METHOD_NOT_ALLOWED"


def test_predict_form_body_is_415(client: flask.testing.FlaskClient) -> None:
    resp = client.post("/", data={"card_number": GOOD})
    assert resp.status_code == 415


def test_predict_invalid_json_is_400(client: flask.testing.FlaskClient) -> None:
    resp = client.post("/", data="{not json", content_type="application/json")
    assert resp.status_code == 400
    assert _error(resp)["field"] == "body"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "card_number", "required"),
        ({"card_number": 4000001234567899}, "card_number", "string"),
        ({"card_number": "4000-0012-3456-7898"}, "card_number", "Luhn"),
        ({"card_number": "12ab"}, "card_number", "digits"),
        ({"card_number": GOOD, "cvv": "123"}, "cvv", "unknown"),
        ([GOOD], "body", "object"),
    ],
)
def test_predict_bad_input_is_400_naming_field(
    client: flask.testing.FlaskClient, body: object, field: str, fragment: str
) -> None:
    resp = client.post("/", json=body)
    assert resp.status_code == 400
    err = _error(resp)
    assert err["field"] == field
    assert fragment in err["message"]
    sent = body.get("card_number") if isinstance(body, dict) else None
    if isinstance(sent, str) and len(sent) >= 12:
        digits = "".join(ch for ch in sent if ch.isdigit())
        assert digits not in resp.get_data(as_text=True)
        assert sent not in resp.get_data(as_text=True)


def test_predict_huge_body_is_413(client: flask.testing.FlaskClient) -> None:
    resp = client.post("/", json={"card_number": "4" * 10_000})
    assert resp.status_code == 413


def test_predict_store_never_synced_is_503(client: flask.testing.FlaskClient) -> None:
    resp = client.post("/", json={"card_number": GOOD})
    assert resp.status_code == 503
    assert _error(resp)["status"] == "UNAVAILABLE"


def test_predict_unknown_card_is_404_masked(
    client: flask.testing.FlaskClient, cfg: RuntimeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    _sync_one_card(cfg, cards.make_card_number(1))
    caplog.set_level(logging.DEBUG)
    resp = client.post("/", json={"card_number": GOOD})
    assert resp.status_code == 404
    assert "400000******7899" in _error(resp)["message"]
    assert GOOD not in resp.get_data(as_text=True)
    assert GOOD not in caplog.text


def test_predict_missing_card_key_is_503_not_a_new_key(
    client: flask.testing.FlaskClient, cfg: RuntimeConfig
) -> None:
    resp = client.post("/", json={"card_number": GOOD})
    assert resp.status_code == 503
    assert isinstance(cfg.card_key.path, Path)
    assert not cfg.card_key.path.exists()


def test_predict_known_card_without_model_is_503(
    client: flask.testing.FlaskClient, cfg: RuntimeConfig
) -> None:
    _sync_one_card(cfg, GOOD)
    resp = client.post("/", json={"card_number": GOOD})
    assert resp.status_code == 503


def test_predict_dependency_down_answers_503_with_retry_after(
    client: flask.testing.FlaskClient,
) -> None:
    resp = client.post("/", json={"card_number": GOOD})

    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "1"


def test_predict_during_a_canary_each_card_is_scored_by_the_version_its_id_routes_to(
    cfg: RuntimeConfig, monkeypatch: pytest.MonkeyPatch, model_dirs: tuple[Path, Path]
) -> None:
    assert isinstance(cfg.endpoint, LocalEndpointConfig)
    canary = cfg.model_copy(
        update={"endpoint": cfg.endpoint.model_copy(update={"canary_traffic_percent": 30})}
    )
    services = Backends(canary)
    key = services.card_key.key(create=True)
    numbers = [cards.make_card_number(i) for i in range(60)]
    rows = [
        {
            "card_id": cards.card_id(n, key),
            "card_masked": cards.mask(n),
            "event_time": 1.0,
            **{f: 0.0 for f in MODEL_FEATURES},
        }
        for n in numbers
    ]
    services.online_store.sync(pd.DataFrame(rows), snapshot_id="snap_0001_x")
    champion, candidate = (
        services.registry.register(
            artifact_path=model_dir,
            snapshot_id="snap_0001_x",
            run_name=f"run-{i}",
            threshold=0.5,
            metrics={},
            params={},
        )
        for i, model_dir in enumerate(model_dirs)
    )
    services.endpoint.deploy(champion, expected_champion=None)
    services.endpoint.deploy(candidate, expected_champion=champion.version)
    monkeypatch.setenv(CONFIG_ENV, canary.to_json())
    app = functions_framework.create_app(target="predict", source=str(FUNCTION_SOURCE))
    import main as function_main

    function_main._scorer.cache_clear()
    try:
        client = app.test_client()
        served = {
            n: client.post("/", json={"card_number": n}).json["model_version"] for n in numbers
        }
        again = {
            n: client.post("/", json={"card_number": n}).json["model_version"] for n in numbers
        }
    finally:
        function_main._scorer.cache_clear()

    # Routed by the card's keyed id, the same way every time.
    assert (
        served
        == again
        == {n: "v0002" if traffic_bucket(cards.card_id(n, key)) < 30 else "v0001" for n in numbers}
    )
    assert set(served.values()) == {"v0001", "v0002"}


def test_predict_scored_request_logs_at_debug_only_and_masked(
    cfg: RuntimeConfig,
    monkeypatch: pytest.MonkeyPatch,
    model_dirs: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A line per scored request is DEBUG (it cost as much as the scoring at INFO); when
    # it is on, it names the card masked, never in full.
    _sync_one_card(cfg, GOOD)
    deploy_first_model(Backends(cfg), model_dirs[0])
    monkeypatch.setenv(CONFIG_ENV, cfg.to_json())
    app = functions_framework.create_app(target="predict", source=str(FUNCTION_SOURCE))
    import main as function_main

    function_main._scorer.cache_clear()
    try:
        client = app.test_client()
        caplog.set_level(logging.INFO, logger="fraud_mlops.function")
        assert client.post("/", json={"card_number": GOOD}).status_code == 200
        assert not [r for r in caplog.records if r.name == "fraud_mlops.function"]
        caplog.set_level(logging.DEBUG, logger="fraud_mlops.function")
        assert client.post("/", json={"card_number": GOOD}).status_code == 200
    finally:
        function_main._scorer.cache_clear()
    scored = [r.getMessage() for r in caplog.records if r.name == "fraud_mlops.function"]
    assert len(scored) == 1
    assert "card=400000******7899" in scored[0]
    assert GOOD not in caplog.text


def test_gunicorn_log_record_with_card_number_is_withheld() -> None:
    import logging

    from app.function.main import _NoCardNumbers

    # As gunicorn's handle_error logs a request line it could not parse.
    record = logging.LogRecord(
        "gunicorn.error",
        logging.WARNING,
        __file__,
        1,
        "Invalid request from ip=%s: %s",
        ("127.0.0.1", "Invalid Method 'get4242424242424242'"),
        None,
    )
    assert _NoCardNumbers().filter(record)
    assert "4242424242424242" not in record.getMessage()
    assert record.getMessage() == "gunicorn.error: text withheld, it may hold a card number"
    harmless = logging.LogRecord(
        "gunicorn.error",
        logging.WARNING,
        __file__,
        1,
        "Invalid request from ip=%s: %s",
        ("127.0.0.1", "Invalid HTTP Version 'HTTP/9.9'"),
        None,
    )
    assert _NoCardNumbers().filter(harmless)
    assert harmless.getMessage().endswith("'HTTP/9.9'")


def test_gunicorn_error_writer_answers_json_400_quoting_nothing() -> None:
    import socket

    import gunicorn.util

    from app.function.main import _gunicorn_error

    # Installed when main imports (functions-framework may load it again as its own module).
    assert gunicorn.util.write_error.__qualname__ == _gunicorn_error.__qualname__
    ours, theirs = socket.socketpair()
    with ours, theirs:
        _gunicorn_error(ours, 431, "Request Header Fields Too Large", "X-Card: 4242424242424242")
        ours.shutdown(socket.SHUT_WR)
        answer = theirs.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"] == {
        "code": 400,
        "status": "INVALID_ARGUMENT",
        "message": "malformed HTTP request",
    }
    assert b"4242" not in answer


def test_read_body_chunked_body_cut_short_is_a_framing_error() -> None:
    from gunicorn.http.errors import InvalidChunkSize, NoMoreData

    from app.function.main import _read_body

    class Stream:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def read(self, size: int) -> bytes:
            raise self.error

    for error in (NoMoreData(b""), InvalidChunkSize(b"zz")):
        request = type("Request", (), {"stream": Stream(error)})()
        assert _read_body(request) is None  # type: ignore[arg-type]
