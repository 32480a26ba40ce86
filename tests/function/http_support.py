"""Shared by the function's contract and hostile-HTTP tests: the OpenAPI document, a raw
HTTP/1.1 client, and the full-card-number detector."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app.core.cards import luhn_valid

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi" / "function.yaml"
PAN_MIN, PAN_MAX = 13, 19
DOC_URI = "urn:fraud-mlops:function"
_RUN = re.compile(rb"[0-9]{%d,}" % PAN_MIN)


# --- the document ------------------------------------------------------------------------


@cache
def document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


@cache
def _registry() -> Registry:
    # "#/components/..." refs resolve against the document itself.
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Registry().with_resource(DOC_URI, resource)


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema of the document (a "#/..." ref or an inline schema)."""
    if "$ref" in schema:
        # The validator's own root would otherwise be what "#" means.
        schema = {"$ref": DOC_URI + schema["$ref"]}
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


WRONG_METHOD = "x-wrong-method"


def operations(path: str) -> dict[str, Any]:
    return {k: v for k, v in document()["paths"][path].items() if not k.startswith("x-")}


def documented_statuses(path: str, method: str) -> set[int]:
    """Statuses documented for ``method`` on ``path``; {405} for a method it does not list."""
    op = operations(path).get(method.lower())
    if op is None:
        return {405}
    return {int(code) for code in op["responses"]}


def all_documented_statuses() -> set[int]:
    found: set[int] = set()
    for path, item in document()["paths"].items():
        found |= {int(c) for op in operations(path).values() for c in op["responses"]}
        if WRONG_METHOD in item:
            found.add(405)
    return found


def documented_answers() -> set[tuple[str, str, int]]:
    """Every (path, method, status) the document gives; method "*" for x-wrong-method."""
    answers = {
        (path, method, int(code))
        for path in document()["paths"]
        for method, op in operations(path).items()
        for code in op["responses"]
    }
    answers |= {(p, "*", 405) for p, item in document()["paths"].items() if WRONG_METHOD in item}
    return answers


def response_spec(path: str, method: str, status: int) -> dict[str, Any]:
    op = operations(path).get(method.lower())
    if op is None:
        assert status == 405, f"{method} {path} is undocumented: only 405 fits, not {status}"
        return _resolve(document()["paths"][path][WRONG_METHOD])
    return _resolve(op["responses"][str(status)])


def validate_response(
    path: str, method: str, status: int, headers: dict[str, str], body: bytes
) -> Any:
    """Raise unless the response is the documented one for (path, method, status)."""
    spec = response_spec(path, method, status)
    media = spec["content"]["application/json"]
    payload = json.loads(body)
    validator(media["schema"]).validate(payload)
    lower = {k.lower(): v for k, v in headers.items()}
    for name, header in spec.get("headers", {}).items():
        header = _resolve(header)
        if header.get("required"):
            assert name.lower() in lower, f"{status} lacks the documented {name} header"
            jsonschema.Draft202012Validator(header["schema"]).validate(lower[name.lower()])
    return payload


def error_schema_validator() -> jsonschema.Draft202012Validator:
    return validator({"$ref": "#/components/schemas/Error"})


def operation_for(path: str, method: str) -> tuple[str, str]:
    """The documented (path, method) whose answers a request to ``path`` gets.

    Undocumented paths are 404s, documented under ``POST /``; a method a path does not
    list keeps its name (its answer is the path's ``x-wrong-method``).
    """
    if path not in document()["paths"]:
        return "/", "post"
    method = method.lower()
    if method == "head" and "get" in operations(path):
        return path, "get"  # HEAD is GET without the body
    return path, method


# --- full card numbers -------------------------------------------------------------------


def pans_in(data: bytes) -> set[str]:
    """Every 13-19 digit window of a digit run in ``data`` that passes Luhn."""
    found: set[str] = set()
    for match in _RUN.finditer(data):
        run = match.group().decode()
        for size in range(PAN_MIN, min(PAN_MAX, len(run)) + 1):
            for i in range(len(run) - size + 1):
                window = run[i : i + size]
                if luhn_valid(window):
                    found.add(window)
    return found


def leaked(sent: Iterable[bytes], received: bytes) -> set[str]:
    """Card numbers the request held that the response (or a log) repeats."""
    pans = set().union(*(pans_in(part) for part in sent)) if sent else set()
    return {p for p in pans if p.encode() in received}


# --- raw HTTP ----------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: bytes


@dataclass
class Stats:
    """What the hostile runs saw; written out for the soak report."""

    requests: int = 0
    server_errors: int = 0
    non_json: int = 0
    pans_in_responses: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)

    def count(self, status: int, source: str = "raw") -> None:
        self.requests += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status >= 500:
            self.server_errors += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "5xx": self.server_errors,
            "non_json_bodies": self.non_json,
            "pans_in_responses": self.pans_in_responses,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_source": dict(sorted(self.by_source.items())),
        }


def send_raw(host: str, port: int, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send bytes as they are; parse the answer with http.client."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        # The server may answer (413) and close before the body is all sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        resp = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
        resp.begin()
        body = resp.read()
        raw_headers = str(resp.headers).encode("latin-1", "replace")
        return RawResponse(resp.status, dict(resp.headers.items()), body, raw_headers)


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """``body`` in chunks of ``sizes`` (cycled), then the last chunk."""
    out, i, k = [], 0, 0
    while i < len(body):
        size = max(1, sizes[k % len(sizes)]) if sizes else len(body)
        part = body[i : i + size]
        out.append(b"%x\r\n%s\r\n" % (len(part), part))
        i += len(part)
        k += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)
