"""The serving container's server, for real on a loopback port with a trained model."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.errors import NotFoundError
from app.core.model.artifact import FraudModel, load_model
from app.core.model.features import feature_matrix
from app.core.schema import MODEL_FEATURES
from app.serving import server as srv
from app.serving.artifact_source import fetch_artifact
from tests.support.synthetic import synthetic_training_frame

pytest_plugins = ["tests.support.fake_gcs"]

ROOT = Path(__file__).resolve().parents[2]
N = len(MODEL_FEATURES)
ROUTES = srv.Routes(health="/v1/health", predict="/v1/predict")


@pytest.fixture(scope="module")
def model_dir(model_dirs: tuple[Path, Path]) -> Path:
    return model_dirs[0]


@pytest.fixture(scope="module")
def model(model_dir: Path) -> FraudModel:
    return load_model(model_dir)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    matrix = feature_matrix(synthetic_training_frame(40, seed=5))
    matrix[3, MODEL_FEATURES.index("secs_since_prev_txn")] = np.nan  # null on the wire
    return matrix


@pytest.fixture
def empty_server() -> Iterator[srv.PredictionServer]:
    server = srv.PredictionServer(("127.0.0.1", 0), ROUTES).start()
    yield server
    server.stop()


@pytest.fixture
def server(empty_server: srv.PredictionServer, model: FraudModel) -> srv.PredictionServer:
    empty_server.set_model(model)
    return empty_server


def _wire(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]


def _call(
    server: srv.PredictionServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], Any]:
    c = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    c.request(method, path, body=body, headers=hdrs)
    resp = c.getresponse()
    raw = resp.read()
    if conn is None:
        c.close()
    assert resp.getheader("Content-Type") == "application/json", raw[:200]
    return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None


def _predict(server: srv.PredictionServer, payload: Any) -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, answer = _call(server, "POST", ROUTES.predict, body)
    return status, answer


# --- health and predictions ----------------------------------------------------------------


def test_server_health_before_load_is_503_then_200_after_load(
    empty_server: srv.PredictionServer, model_dir: Path, rows: np.ndarray
) -> None:
    gate = threading.Event()

    def slow_load() -> FraudModel:
        gate.wait(10)
        return load_model(model_dir)

    srv.load_in_background(empty_server, slow_load, on_failure=lambda: None)
    status, headers, body = _call(empty_server, "GET", ROUTES.health)
    assert status == 503 and body["error"]["status"] == "UNAVAILABLE"
    assert headers["Retry-After"] == str(srv.RETRY_AFTER_SECONDS)
    assert _predict(empty_server, {"instances": _wire(rows[:1])})[0] == 503

    gate.set()
    deadline = time.monotonic() + 10
    while _call(empty_server, "GET", ROUTES.health)[0] != 200:
        assert time.monotonic() < deadline, "never became healthy"
        time.sleep(0.02)
    assert _call(empty_server, "GET", ROUTES.health)[2] == {"status": "ok"}
    assert _predict(empty_server, {"instances": _wire(rows[:1])})[0] == 200


def test_server_failed_load_reports_failure_and_stays_unhealthy(
    empty_server: srv.PredictionServer, tmp_path: Path
) -> None:
    failed = threading.Event()
    thread = srv.load_in_background(
        empty_server, lambda: load_model(tmp_path / "absent"), on_failure=failed.set
    )
    thread.join(10)

    assert failed.is_set()
    assert _call(empty_server, "GET", ROUTES.health)[0] == 503


def test_server_predictions_equal_fraud_model_predict_for_the_same_rows(
    server: srv.PredictionServer, model: FraudModel, rows: np.ndarray
) -> None:
    status, body = _predict(server, {"instances": _wire(rows)})

    assert status == 200
    assert body["predictions"] == model.predict(rows).tolist()
    assert len(body["predictions"]) == len(rows)


def test_server_single_instance_with_nulls_and_ints_scores_like_the_model(
    server: srv.PredictionServer, model: FraudModel, rows: np.ndarray
) -> None:
    row: list[float | int | None] = list(_wire(rows[3:4])[0])
    row[0] = 12  # an int is a number
    expected = rows[3:4].copy()
    expected[0, 0] = 12.0

    status, body = _predict(server, {"instances": [row], "parameters": {}})

    assert status == 200
    assert body == {"predictions": model.predict(expected).tolist()}


def test_server_keeps_the_connection_after_a_refused_request(
    server: srv.PredictionServer, rows: np.ndarray
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    good = json.dumps({"instances": _wire(rows[:2])}).encode()
    bad = json.dumps({"instances": [[1.0]]}).encode()
    too_big = b" " * (srv.MAX_BODY_BYTES + 1)
    answers = [
        _call(server, "POST", ROUTES.predict, body, conn=conn)[0]
        for body in (good, bad, too_big, good)
    ]
    conn.close()

    assert answers == [200, 400, 413, 200]


# --- bad input: 4xx JSON naming the field, never a 5xx --------------------------------------


def _row(**changes: Any) -> list[Any]:
    row: list[Any] = [0.5] * N
    for index, value in changes.items():
        row[int(index.removeprefix("f"))] = value
    return row


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        ({"instances": [[0.5] * (N - 1)]}, f"instances[0][{N - 1}]", "missing"),
        ({"instances": [_row(), [0.5] * (N + 1)]}, f"instances[1][{N}]", "too many"),
        ({"instances": [_row(f2="1.5")]}, "instances[0][2]", "not a string"),
        ({"instances": [_row(f0=True)]}, "instances[0][0]", "not a boolean"),
        ({"instances": [_row(f4=[1.0])]}, "instances[0][4]", "not a list"),
        ({"instances": [_row(f4={"v": 1})]}, "instances[0][4]", "not an object"),
        ({"instances": [_row(), "row"]}, "instances[1]", "not a string"),
        ({"instances": [{"V1": 1.0}]}, "instances[0]", "not an object"),
        ({"instances": []}, "instances", "non-empty"),
        ({"instances": _row()}, "instances[0]", "not a number"),
        ({"instances": "x"}, "instances", "non-empty list"),
        ({}, "instances", "non-empty list"),
        ({"instances": [_row()], "card": 1}, "card", "unknown"),
        ([_row()], "body", "JSON object"),
        (None, "body", "JSON object"),
        ({"instances": [_row()] * (srv.MAX_INSTANCES + 1)}, "instances", "at most"),
    ],
)
def test_server_bad_instances_are_400_naming_the_field(
    server: srv.PredictionServer, payload: Any, field: str, says: str
) -> None:
    status, body = _predict(server, payload)

    assert status == 400
    assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["field"] == field
    assert says in body["error"]["message"]


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ("NaN", "body"),  # not JSON, though Python's json takes it by default
        ("Infinity", "body"),
        ("-Infinity", "body"),
        ("1e999", "instances[0][1]"),  # parses to inf
        ("1" + "0" * 400, "instances[0][1]"),  # an int beyond float range
        ("1" + "0" * 5000, "body"),  # beyond Python's integer-literal limit
    ],
)
def test_server_non_finite_numbers_are_400(
    server: srv.PredictionServer, literal: str, field: str
) -> None:
    cells = ["0.5"] * N
    cells[1] = literal
    raw = ('{"instances": [[' + ",".join(cells) + "]]}").encode()

    status, body = _predict(server, raw)

    assert status == 400 and body["error"]["field"] == field


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00",
        b'{"instances": [[1,2]]',
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting: RecursionError in the parser
        b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
)
def test_server_malformed_json_is_400_json(server: srv.PredictionServer, raw: bytes) -> None:
    status, body = _predict(server, raw)

    assert status == 400 and body["error"]["field"] == "body"


def test_server_body_over_the_limit_is_413(server: srv.PredictionServer) -> None:
    status, body = _predict(server, b"[" + b"0," * (srv.MAX_BODY_BYTES // 2) + b"0]")

    assert status == 413 and body["error"]["status"] == "PAYLOAD_TOO_LARGE"


def test_server_declared_huge_body_is_413_without_reading_it(
    server: srv.PredictionServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {ROUTES.predict} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * srv.DRAIN_LIMIT_BYTES}\r\n\r\n".encode()
        )
        answer = sock.makefile("rb").read()  # the server closes after answering

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == 413


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", ROUTES.predict, "POST"),
        ("PUT", ROUTES.predict, "POST"),
        ("DELETE", ROUTES.predict, "POST"),
        ("POST", ROUTES.health, "GET, HEAD"),
        ("PATCH", ROUTES.health, "GET, HEAD"),
        ("BREW", ROUTES.predict, "GET, HEAD, POST"),  # a method http.server does not know
    ],
)
def test_server_wrong_method_is_405_json(
    server: srv.PredictionServer, method: str, path: str, allow: str
) -> None:
    status, headers, body = _call(server, method, path, b"{}")

    assert status == 405 and body["error"]["status"] == "METHOD_NOT_ALLOWED"
    assert headers["Allow"] == allow


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Length": "-3"}, 400),
        ({"Content-Length": "many"}, 400),
    ],
)
def test_server_bad_headers_are_4xx_json(
    server: srv.PredictionServer, headers: dict[str, str], status: int
) -> None:
    got, _, body = _call(server, "POST", ROUTES.predict, b"{}", headers=headers)

    assert got == status and body["error"]["code"] == status


@pytest.mark.parametrize(
    ("raw_request", "status"),
    [
        # No Content-Length: a body the server cannot delimit.
        (f"POST {ROUTES.predict} HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        (
            f"POST {ROUTES.predict} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            "2\r\n{}\r\n0\r\n\r\n",
            411,
        ),
        ("GET /" + "a" * 70_000 + " HTTP/1.1\r\n\r\n", 414),
        ("NONSENSE\r\n\r\n", 400),
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ],
)
def test_server_raw_protocol_errors_are_json(
    server: srv.PredictionServer, raw_request: str, status: int
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw_request.encode())
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").read()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), head
    assert b"Content-Type: application/json" in head
    first = body.split(b"\r\n\r\n")[0]  # a kept-alive connection may answer once only
    assert json.loads(first)["error"]["code"] == status


def test_server_random_garbage_never_gets_a_5xx(server: srv.PredictionServer) -> None:
    rng = np.random.default_rng(3)
    alphabet = list(b'[]{},:"0123456789.eE-+ nulltruefalseNaN\\')
    statuses = set()
    for _ in range(300):
        size = int(rng.integers(0, 200))
        raw = bytes(rng.choice(alphabet, size).tolist())
        statuses.add(_predict(server, raw)[0])

    assert statuses and max(statuses) < 500, statuses


def test_server_head_on_health_sends_headers_only(server: srv.PredictionServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("HEAD", ROUTES.health)
    resp = conn.getresponse()

    assert resp.status == 200 and resp.read() == b""
    conn.close()


# --- the process: python -m app.serving --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.serving"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_serving_module_serves_the_artifact_then_exits_0_on_sigterm(
    model_dir: Path, model: FraudModel, rows: np.ndarray
) -> None:
    port = _free_port()
    proc = _start(
        {
            "AIP_HTTP_PORT": str(port),
            "AIP_HEALTH_ROUTE": "/h",
            "AIP_PREDICT_ROUTE": "/v1/models/m:predict",
            "AIP_STORAGE_URI": str(model_dir),
        }
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/h")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "never became healthy"
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            "/v1/models/m:predict",
            body=json.dumps({"instances": _wire(rows[:5])}),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["predictions"] == model.predict(rows[:5]).tolist()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0


def test_serving_module_exits_1_when_the_artifact_is_missing(tmp_path: Path) -> None:
    proc = _start({"AIP_HTTP_PORT": str(_free_port()), "AIP_STORAGE_URI": str(tmp_path / "none")})
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 1
    assert b"NotFoundError" in out and b"Traceback" not in out


@pytest.mark.parametrize(
    "env",
    [
        {"AIP_HTTP_PORT": "eighty"},
        {"AIP_HTTP_PORT": "8080", "AIP_STORAGE_URI": ""},
        {"AIP_HTTP_PORT": "8080", "AIP_STORAGE_URI": "/m", "AIP_PREDICT_ROUTE": "predict"},
    ],
)
def test_serving_main_bad_environment_exits_2(env: dict[str, str]) -> None:
    assert srv.main({"AIP_STORAGE_URI": "/m", **env}) == 2


# --- the artifact source ----------------------------------------------------------------------


def test_fetch_artifact_local_path_is_used_in_place(model_dir: Path, tmp_path: Path) -> None:
    assert fetch_artifact(str(model_dir), tmp_path) == model_dir
    assert fetch_artifact(f"file://{model_dir}", tmp_path) == model_dir


def test_fetch_artifact_missing_local_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        fetch_artifact(str(tmp_path / "absent"), tmp_path)


@pytest.mark.emulators
def test_fetch_artifact_downloads_the_gcs_prefix_and_loads(
    fake_gcs: Any, model_dir: Path, model: FraudModel, rows: np.ndarray, tmp_path: Path
) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)
    for path in model_dir.iterdir():
        fake_gcs.client.bucket(bucket).blob(f"copies/v0001/{path.name}").upload_from_filename(
            str(path)
        )
    # A sibling version sharing the prefix's text must not be mixed in.
    fake_gcs.client.bucket(bucket).blob("copies/v00010/model.txt").upload_from_string("x")

    local = fetch_artifact(f"gs://{bucket}/copies/v0001/", tmp_path, client=fake_gcs.client)

    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in model_dir.iterdir())
    assert load_model(local).predict(rows).tolist() == model.predict(rows).tolist()


@pytest.mark.emulators
def test_fetch_artifact_empty_gcs_prefix_is_not_found(fake_gcs: Any, tmp_path: Path) -> None:
    bucket = fake_gcs.new_bucket(versioning=False)

    with pytest.raises(NotFoundError, match="no objects"):
        fetch_artifact(f"gs://{bucket}/nothing", tmp_path, client=fake_gcs.client)
