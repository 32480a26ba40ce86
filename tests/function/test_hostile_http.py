"""The running function (functions-framework under gunicorn) against hostile HTTP.

Hypothesis writes raw HTTP/1.1 requests onto a socket: any method, odd paths and
headers, every content type, charset and content coding, bodies of random JSON, deep
nesting, huge and unicode strings, invalid UTF-8 and random bytes, sized around the
4 KB limit, framed by Content-Length or chunked. Then schemathesis drives the same
server from docs/openapi/function.yaml. Whatever is sent:

* no 5xx (every dependency is present, so not even a 503);
* every answer is JSON, and the one the document gives for its operation and status;
* no full card number (a 13-19 digit Luhn-valid run of the request) comes back, in a
  header or the body, or reaches the server's log.

Most requests are well-formed HTTP/1.1 messages; the ones gunicorn cannot parse (a bad
request line or header, a malformed chunk, an unknown transfer coding) each carry a
card number where it would be echoed, and must get a JSON 400 that quotes nothing of
them (``app.function.main`` replaces gunicorn's HTML error page).

``HYPOTHESIS_PROFILE=fraud-mlops-soak`` raises the budget past 10,000 requests; with
``FRAUD_MLOPS_HTTP_STATS=<file>`` the counts are written there at the end.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis.checks import CheckContext

from app.core import cards
from app.function.main import MAX_BODY_BYTES
from tests.function.conftest import RunningFunction, hostile_settings, schemathesis_examples
from tests.function.http_support import (
    OPENAPI,
    RawResponse,
    chunked,
    documented_statuses,
    error_schema_validator,
    leaked,
    operation_for,
    send_raw,
    validate_response,
)

pytestmark = pytest.mark.slow
T = TypeVar("T")

# --- strategies --------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """``one_of`` with weights: most requests should reach the body handling."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


_luhn_payload = st.text("0123456789", min_size=12, max_size=18)
pans = st.one_of(
    st.sampled_from(["4000001234567899", "4242424242424242", "4111111111111111"]),
    _luhn_payload.map(lambda p: p + cards.luhn_check_digit(p)),
)


@st.composite
def card_values(draw: st.DrawFn, known: tuple[str, ...]) -> object:
    pan = draw(st.one_of(st.sampled_from(known), pans))
    grouped = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    return draw(
        weighted(
            (6, st.just(pan)),
            (1, st.just(" ".join(grouped))),
            (1, st.just("-".join(grouped))),
            (1, st.just(pan[:-1] + str((int(pan[-1]) + 1) % 10))),  # fails Luhn
            (1, st.just(int(pan))),
            (1, st.text(max_size=40)),
            (1, st.text("0123456789 -", max_size=25)),
            (1, st.just([pan])),
            (1, st.just({"number": pan})),
        )
    )


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    pans,
)
json_values = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _dumps(value: object, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


@st.composite
def bodies(draw: st.DrawFn, known: tuple[str, ...]) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                *["card"] * 10,
                "card_extra",
                "pan_field",
                "json",
                "nested",
                "nested_object",
                "huge_string",
                "near_limit",
                "unicode",
                "invalid_utf8",
                "random_bytes",
                "gzip",
                "utf16",
                "bom",
                "empty",
            ]
        )
    )
    ascii_only = draw(st.booleans())
    if kind == "card":
        return _dumps({"card_number": draw(card_values(known))}, ascii_only)
    if kind == "card_extra":
        extra = draw(st.dictionaries(st.text(max_size=20), json_values, min_size=1, max_size=3))
        return _dumps({"card_number": draw(card_values(known)), **extra}, ascii_only)
    if kind == "pan_field":
        pan = draw(pans)
        prefix = draw(st.sampled_from(["", "x", "card_", "_"]))
        return _dumps({"card_number": pan, prefix + pan: pan}, ascii_only)
    if kind == "json":
        return _dumps(draw(json_values), ascii_only)
    if kind == "nested":
        depth = draw(st.integers(1, 2200))
        return b'{"card_number": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "nested_object":
        depth = draw(st.integers(1, 400))
        return b'{"card_number": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    if kind == "huge_string":
        size = draw(st.integers(0, 3 * MAX_BODY_BYTES))
        fill = draw(st.sampled_from(["4", "x", "\u00e9", "\U0001f4b3", " "]))
        return _dumps({"card_number": fill * size}, ascii_only)
    if kind == "near_limit":
        # Whitespace padding puts the body exactly around the limit, valid JSON throughout.
        target = MAX_BODY_BYTES + draw(st.integers(-8, 8))
        core = _dumps({"card_number": draw(st.one_of(st.sampled_from(known), pans))}, True)
        return core[:-1] + b" " * max(0, target - len(core)) + b"}"
    if kind == "unicode":
        key = draw(st.one_of(st.just("card_number"), st.text(min_size=1, max_size=10)))
        return _dumps({key: draw(st.text(max_size=200))}, ascii_only)
    if kind == "invalid_utf8":
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
        return b'{"card_number": "' + draw(pans).encode() + junk + b'"}'
    if kind == "random_bytes":
        return draw(st.binary(max_size=600))
    if kind == "gzip":
        raw = _dumps({"card_number": draw(st.one_of(st.sampled_from(known), pans))}, True)
        return gzip.compress(raw) if draw(st.booleans()) else zlib.compress(raw)
    if kind == "utf16":
        text = json.dumps({"card_number": draw(st.sampled_from(known))})
        return text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    if kind == "bom":
        return b"\xef\xbb\xbf" + _dumps({"card_number": draw(st.sampled_from(known))}, True)
    return b""


_CHARSETS = ["utf-8", "UTF-8", "utf8", '"utf-8"', "latin-1", "iso-8859-1", "utf-16", "ascii", "x"]
content_types = weighted(
    (8, st.just("application/json")),
    (3, st.sampled_from(_CHARSETS).map(lambda c: f"application/json; charset={c}")),
    (
        2,
        st.sampled_from(
            [
                None,
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/JSON",
                "application/json-patch+json",
                "application/json; foo=bar",
                "*/*",
                "",
            ]
        ),
    ),
    (1, st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,12}", fullmatch=True)),
)
content_encodings = st.sampled_from(
    [None] * 16 + ["identity", "gzip", "deflate", "br", "gzip, identity", "x-custom"]
)


_SPECIAL = {"PRI", "CONNECT"}  # HTTP/2 preface, tunnels: not requests to a function
methods = weighted(
    (12, st.just("POST")),
    (3, st.sampled_from(["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])),
    (1, st.from_regex(r"[A-Z]{3,10}", fullmatch=True).filter(lambda m: m not in _SPECIAL)),
)
_PATH_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
paths = weighted(
    (12, st.just("/")),
    (1, st.just("/healthz")),
    (1, st.sampled_from(["/healthz/", "//", "/favicon.ico", "/robots.txt", "/predict", "/../"])),
    (1, _PATH_TEXT.map(lambda t: "/" + quote(t, safe="/"))),
    (1, pans.map(lambda p: f"/{p}")),
    (1, pans.map(lambda p: f"/?card_number={p}")),
)
_FRAMING_HEADERS = {
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "expect",
    "content-type",
    "content-encoding",
    "x-cloud-trace-context",
    "upgrade",
    "te",
    "trailer",
    "http2-settings",
}
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True).filter(
    # Framing is drawn on purpose below; gunicorn's own proxy checks (X-Forwarded-*) answer
    # contradicting scheme headers with its HTML 400, before the function runs.
    lambda n: n.lower() not in _FRAMING_HEADERS and "forward" not in n.lower()
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
    pans,
    pans.map(lambda p: f"Bearer {p}"),
)
traces = st.one_of(
    st.none(),
    st.just("0123456789abcdef0123456789abcdef/1;o=1"),
    st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda t: f"{t}/42;o=1"),
    pans.map(lambda p: f"{p}/1;o=1"),
    pans.map(lambda p: f"{(p + '0' * 32)[:32]}/1"),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
)


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    framing: str  # "length" | "chunked" | "gzip-chunked" | "none"
    headers: tuple[tuple[str, str], ...]
    body: bytes
    wire: bytes


@st.composite
def raw_requests(draw: st.DrawFn, known: tuple[str, ...]) -> RawRequest:
    method = draw(methods)
    path = draw(paths)
    body = draw(bodies(known))
    framing = draw(st.sampled_from(["length"] * 4 + ["chunked"] * 2 + ["gzip-chunked", "none"]))
    headers: list[tuple[str, str]] = [("Host", "127.0.0.1"), ("Connection", "close")]
    content_type = draw(content_types)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    encoding = draw(content_encodings)
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    trace = draw(traces)
    if trace is not None:
        headers.append(("X-Cloud-Trace-Context", trace))
    headers += draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    if framing == "none":
        body = b""
        payload = b""
    elif framing == "length":
        headers.append(("Content-Length", str(len(body))))
        payload = body
    else:
        coding = "chunked" if framing == "chunked" else "gzip, chunked"
        headers.append(("Transfer-Encoding", coding))
        payload = chunked(body, draw(st.lists(st.integers(1, 5000), min_size=1, max_size=4)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    wire = head.encode("latin-1") + b"\r\n" + payload
    return RawRequest(method, path, framing, tuple(headers), body, wire)


# --- the properties ----------------------------------------------------------------------


def _check_answer(server: RunningFunction, req: RawRequest, resp: RawResponse) -> None:
    """Count, then assert: documented JSON, no 5xx, no card number echoed."""
    stats = server.stats
    stats.count(resp.status)
    server.remember(req.wire)
    echoed = leaked([req.wire], resp.raw_headers + resp.body)
    stats.pans_in_responses += bool(echoed)
    is_json = True
    if req.method != "HEAD":
        try:
            json.loads(resp.body)
        except ValueError:
            is_json = False
    stats.non_json += not is_json

    assert resp.status < 500, (resp.status, resp.body[:300], req.wire[:300])
    assert not echoed, f"card number {sorted(echoed)} echoed by {resp.status}"
    assert resp.headers.get("Content-Type") == "application/json", (resp.headers, req.wire[:300])
    doc_path, doc_method = _operation(req, resp.status)
    if req.method == "HEAD":
        assert resp.body == b""
        return
    assert is_json, resp.body[:300]
    validate_response(doc_path, doc_method, resp.status, resp.headers, resp.body)


def _operation(req: RawRequest, status: int) -> tuple[str, str]:
    """The documented operation that answered, and that it documents ``status``.

    The function compares the percent-decoded path; the server normalises odd request
    targets first ("//x" is a network-path reference, "/a/../" may collapse), so for an
    odd path any operation the request could have reached may be the one.
    """
    path = unquote(req.path.split("?", 1)[0], errors="replace")
    exact = operation_for(path, req.method)
    candidates = [exact] + [operation_for(p, req.method) for p in ("/", "/healthz")]
    if path in ("/", "/healthz"):
        candidates = [exact]
    for op in candidates:
        if status in documented_statuses(*op):
            return op
    raise AssertionError(f"{req.method} {req.path}: {status} documented for none of {candidates}")


def test_hostile_http_any_request_is_documented_json_without_pan(
    function_server: RunningFunction,
) -> None:
    @hostile_settings()
    @given(req=raw_requests(function_server.known_cards))
    def run(req: RawRequest) -> None:
        resp = send_raw(function_server.host, function_server.port, req.wire)
        _check_answer(function_server, req, resp)

    run()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_hostile_http_body_around_the_limit_is_413_exactly_above_it(
    function_server: RunningFunction, framing: str
) -> None:
    @settings(hostile_settings(), max_examples=max(50, hostile_settings().max_examples // 20))
    @given(size=st.integers(MAX_BODY_BYTES - 64, MAX_BODY_BYTES + 64), chunk=st.integers(1, 4200))
    def run(size: int, chunk: int) -> None:
        core = json.dumps({"card_number": function_server.known_cards[0]}).encode()
        body = core[:-1] + b" " * (size - len(core)) + b"}"
        head = (
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        )
        if framing == "length":
            wire = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        else:
            wire = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, [chunk])
        resp = send_raw(function_server.host, function_server.port, wire)
        req = RawRequest("POST", "/", framing, (), body, wire)
        _check_answer(function_server, req, resp)
        assert resp.status == (413 if len(body) > MAX_BODY_BYTES else 200), (len(body), resp.body)

    run()


def test_hostile_http_deep_nesting_is_400_naming_the_body(
    function_server: RunningFunction,
) -> None:
    @settings(hostile_settings(), max_examples=max(50, hostile_settings().max_examples // 20))
    @given(depth=st.integers(33, 2000), opener=st.sampled_from([b"[", b'{"a":']))
    def run(depth: int, opener: bytes) -> None:
        closer = b"]" if opener == b"[" else b"}"
        inner = b"1" if opener != b"[" else b""
        body = b'{"card_number": ' + opener * depth + inner + closer * depth + b"}"
        if len(body) > MAX_BODY_BYTES:
            return
        wire = (
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        resp = send_raw(function_server.host, function_server.port, wire)
        _check_answer(function_server, RawRequest("POST", "/", "length", (), body, wire), resp)
        assert resp.status == 400
        assert json.loads(resp.body)["error"]["field"] == "body"

    run()


# --- schemathesis, from the document -----------------------------------------------------

schema = schemathesis.openapi.from_path(OPENAPI)
schema.config.generation.update(max_examples=schemathesis_examples())


@schemathesis.check
def no_card_number_echoed(ctx: CheckContext, response: schemathesis.Response, case: object) -> bool:
    request = response.request
    sent = [
        str(request.url).encode(),
        str(dict(request.headers)).encode(),
        request.body if isinstance(request.body, bytes) else str(request.body or "").encode(),
    ]
    received = str(dict(response.headers)).encode() + response.content
    echoed = leaked(sent, received)
    assert not echoed, f"card number {sorted(echoed)} echoed"
    assert response.status_code < 500, response.text[:300]
    return True


@schema.parametrize()
@settings(hostile_settings(), max_examples=schemathesis_examples())
def test_hostile_http_schemathesis_cases_conform_to_the_document(
    case: schemathesis.Case, function_server: RunningFunction
) -> None:
    response = case.call(base_url=function_server.url, timeout=10)
    request = response.request
    function_server.stats.count(response.status_code, source="schemathesis")
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    function_server.remember(str(request.url).encode(), str(dict(request.headers)).encode(), body)
    if request.method != "HEAD":
        try:
            json.loads(response.content)
        except ValueError:
            function_server.stats.non_json += 1
    case.validate_response(
        response,
        # A string that passes the schema is rarely a Luhn-valid card on file: a 400 or a
        # 404 for "positive" data is the contract, not a failure.
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
        additional_checks=[no_card_number_echoed],
    )


# Messages gunicorn cannot parse, each with a card number where it would be echoed. (A
# card number alone is a valid method token: that one reaches the function, 405.)
malformed_messages = st.one_of(
    # A method gunicorn refuses: lower case, or with a control character.
    pans.map(lambda p: f"get{p} / HTTP/1.1\r\nHost: x\r\n\r\n"),
    pans.map(lambda p: f"GET{chr(1)}{p} / HTTP/1.1\r\nHost: x\r\n\r\n"),
    # A request line with too few parts, or an unknown version.
    pans.map(lambda p: f"POST {p}\r\nHost: x\r\n\r\n"),
    pans.map(lambda p: f"POST / HTTP/{p[:1]}.{p[1:3]}\r\nHost: x\r\n\r\n"),
    # A header line with no colon, a header name with a space or a control character.
    pans.map(lambda p: f"POST / HTTP/1.1\r\nHost: x\r\n{p}\r\n\r\n"),
    pans.map(lambda p: f"POST / HTTP/1.1\r\nHost: x\r\nCard {p}: 1\r\n\r\n"),
    pans.map(lambda p: f"POST / HTTP/1.1\r\nHost: x\r\nX{chr(2)}{p}: 1\r\n\r\n"),
    # A chunk size that is no hex number (digits alone are one); an unknown transfer coding.
    pans.map(
        lambda p: (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\ng{p}\r\n{{}}\r\n0\r\n\r\n"
        )
    ),
    pans.map(
        lambda p: (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: x{p}, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        )
    ),
)


def test_hostile_http_unparsable_message_is_json_400_without_pan(
    function_server: RunningFunction,
) -> None:
    validator = error_schema_validator()

    @settings(hostile_settings(), max_examples=max(50, hostile_settings().max_examples // 10))
    @given(message=malformed_messages)
    def run(message: str) -> None:
        wire = message.encode("latin-1")
        resp = send_raw(function_server.host, function_server.port, wire)
        stats = function_server.stats
        stats.count(resp.status)
        function_server.remember(wire)
        echoed = leaked([wire], resp.raw_headers + resp.body)
        stats.pans_in_responses += bool(echoed)
        try:
            payload = json.loads(resp.body)
        except ValueError:
            stats.non_json += 1
            raise AssertionError(f"not JSON: {resp.body[:200]!r} for {wire[:120]!r}") from None
        assert not echoed, f"card number {sorted(echoed)} echoed"
        assert resp.status == 400, (resp.status, resp.body[:200], wire[:120])
        assert resp.headers.get("Content-Type") == "application/json"
        validator.validate(payload)
        assert payload["error"]["status"] == "INVALID_ARGUMENT"

    run()


def test_hostile_http_server_log_holds_no_sent_pan(function_server: RunningFunction) -> None:
    # Last in the module: by now every request above has been answered and logged.
    assert function_server.stats.requests > 0, "run with the rest of the module"
    assert function_server.log_bytes(), "the server logged nothing: is log_path captured?"
    assert function_server.pans_in_log() == set()
