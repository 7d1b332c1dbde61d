"""Hostile HTTP requests, each on a raw connection to a `lstmserve serve` process: the request line,
headers, methods, HTTP versions, Expect and Upgrade, absolute and percent-encoded paths, and garbage
where a token is due. Each gets a 4xx with a short message or a closed connection, never a 500 or a
traceback in the server's log, and the server answers a good request after each. Bodies are
test_http_hostile.py's; slow and silent clients, connection limits and pipelining test_http_clients.py's.
"""

from __future__ import annotations

import json

import pytest

from ..raw_http import RawHttp, exchange, request
from .http_hostile import (
    CHARS,
    GENERATE,
    INFER,
    TEXT,
    good_infer,
    hostile_server,
    infer_body,
    post,
    refused,
)

MESSAGE_BYTES = 1 << 20  # --max-message-bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from hostile_server(tmp_path_factory.mktemp("requests"), "--max-message-bytes", str(MESSAGE_BYTES))


# name -> (the request's bytes, the status, words its message must hold)
CASES = {
    # --- the request line and headers -------------------------------------------------------------
    "a 20 kB URL": (request("GET", "/v2/" + "a" * 20_000), 414, ["URL"]),
    "101 headers": (request("GET", "/v2", [(f"X-{n}", "a") for n in range(101)]), 431, ["headers"]),
    "a 17 kB header": (request("GET", "/v2", {"X-Big": "a" * 17_000}), 431, ["headers"]),
    "a header name with a space": (b"GET /v2 HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, ["Invalid HTTP"]),
    "a NUL in a header value": (b"GET /v2 HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400, ["Invalid HTTP"]),
    "a bare LF request": (b"GET /v2 HTTP/1.1\nHost: x\n\n", 400, ["Invalid HTTP"]),
    "HTTP/2 with prior knowledge": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, ["Invalid HTTP"]),
    "HTTP/3.7": (request("GET", "/v2", version="HTTP/3.7"), 400, ["Invalid HTTP"]),
    "TRACE": (request("TRACE", "/v2"), 405, ["TRACE"]),
    "OPTIONS": (request("OPTIONS", INFER), 405, ["POST"]),
    "DELETE on a model": (request("DELETE", f"/v2/models/{CHARS}"), 405, ["GET"]),
    "a made-up method": (request("BREW", "/v2"), 400, ["Invalid HTTP"]),
    "CONNECT": (request("CONNECT", "127.0.0.1:443"), 400, ["Invalid HTTP"]),
    "POST with an h2c Upgrade": (
        post(infer_body(), {"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": ""}),
        400,
        [],
    ),
    # --- paths ------------------------------------------------------------------------------------
    "no such route": (request("GET", "/etc/passwd"), 404, ["/v2"]),
    "a traversal in the model's name": (request("GET", "/v2/models/../../etc/passwd"), 404, []),
    "an encoded traversal": (request("POST", "/v2/models/..%2F..%2Fetc%2Fpasswd/infer"), 404, []),
    "an encoded dot-dot as the model": (
        request("POST", "/v2/models/%2e%2e/infer", body=infer_body()),
        404,
        ["'..'"],
    ),
    "a NUL in the model's name": (
        request("POST", "/v2/models/chars%00/infer", body=infer_body()),
        404,
        ["\\x00"],
    ),
    "a newline in the model's name": (
        request("POST", "/v2/models/chars%0AERROR%20forged/infer", body=infer_body()),
        404,
        ["\\n"],
    ),
    "percent-encoded bytes that are not UTF-8": (request("GET", "/v2/models/%ff%fe"), 404, ["unknown model"]),
    "raw bytes that are not ASCII": (b"GET /v2/models/\xff\xfe HTTP/1.1\r\n\r\n", 400, ["Invalid HTTP"]),
    "a broken percent-encoding": (request("GET", "/v2/models/%zz%"), 404, ["unknown model"]),
    "a 5000-character model name": (request("GET", "/v2/models/" + "m" * 5000), 404, ["unknown model"]),
    "a version of 30 digits": (
        post(infer_body(), target=f"/v2/models/{CHARS}/versions/{'9' * 30}/infer"),
        400,
        ["version"],
    ),
    "a negative version": (
        post(infer_body(), target=f"/v2/models/{CHARS}/versions/-1/infer"),
        400,
        ["version"],
    ),
    "an encoded version": (request("GET", f"/v2/models/{CHARS}/versions/%2e%2e"), 400, ["version"]),
}


@pytest.mark.parametrize("name", CASES)
def test_each_hostile_request_is_refused_briefly(server, name):
    data, status, words = CASES[name]
    refused(exchange(server.http_port, data), status, *words)
    good_infer(server.http_port)


def test_http_1_0_is_answered_and_the_connection_closed(server):
    with RawHttp(server.http_port) as connection:
        connection.send(request("POST", INFER, body=infer_body(), version="HTTP/1.0"))
        answer = connection.response()
        assert answer is not None and answer.status == 200 and answer.header("connection") == "close"
        assert connection.closed(within=10)


def test_an_http_0_9_request_line_is_answered_well_formed(server):
    """No version at all: llhttp takes it as HTTP/0.9, and the answer (or a close) is HTTP/1.1's."""
    answer = exchange(server.http_port, b"GET /v2/health/live\r\n\r\n")
    assert answer is None or answer.status < 500, answer


def test_expect_100_continue(server):
    """A good request is told to continue; one refused by its length is not, and gets its 413."""
    body = infer_body()
    with RawHttp(server.http_port) as connection:
        connection.send(post(b"", {"Expect": "100-continue", "Content-Length": str(len(body))}))
        interim = connection.response()
        assert interim is not None and interim.status == 100
        connection.send(body)
        answer = connection.response()
        assert answer is not None and answer.status == 200
    with RawHttp(server.http_port) as connection:
        connection.send(post(b"", {"Expect": "100-continue", "Content-Length": str(MESSAGE_BYTES + 1)}))
        refused(connection.response(), 413, "--max-message-bytes")
        assert connection.closed(within=10)


@pytest.mark.parametrize(
    "upgrade",
    [
        {"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAAQAAP__"},
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
         "Sec-WebSocket-Version": "13"},
    ],
    ids=["h2c", "websocket"],
)  # fmt: skip
def test_an_upgrade_is_ignored(server, upgrade):
    """A GET that asks to upgrade is answered in HTTP/1.1, as if it had not asked."""
    answer = exchange(server.http_port, request("GET", f"/v2/models/{CHARS}", upgrade))
    assert answer is not None and answer.status == 200 and answer.json()["name"] == CHARS


def test_an_absolute_form_url_is_served_by_its_path(server):
    answer = exchange(
        server.http_port, request("POST", f"http://elsewhere.example:1{INFER}", body=infer_body())
    )
    assert answer is not None and answer.status == 200


TOKEN, CHARS_ONLY = "hostile-token-0123456789", "chars-only-token-0123456789"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secured")
    tokens = folder / "tokens"
    tokens.write_text(f"{TOKEN}\n{CHARS_ONLY} {CHARS}\n")
    yield from hostile_server(folder, "--auth-tokens", str(tokens), secret=TOKEN)


AUTHORIZATIONS = {
    "none": ([], 401),
    "empty": ([("Authorization", "")], 401),
    "Bearer and nothing": ([("Authorization", "Bearer")], 401),
    "Bearer and spaces": ([("Authorization", "Bearer    ")], 401),
    "lowercase bearer": ([("Authorization", f"bearer {TOKEN}")], 401),
    "Basic": ([("Authorization", "Basic aG9zdGlsZTp0b2tlbg==")], 401),
    "a token one character short": ([("Authorization", f"Bearer {TOKEN[:-1]}")], 401),
    "bytes that are not UTF-8": ([("Authorization", "Bearer \xff\xfe\x80" + TOKEN)], 401),
    "a 15 kB token": ([("Authorization", "Bearer " + "t" * 15_000)], 401),
    "a 17 kB token": ([("Authorization", "Bearer " + "t" * 17_000)], 431),
    "a control character": ([("Authorization", f"Bearer {TOKEN}\x01")], 400),
    "a bad token, then a good one": (
        [("Authorization", "Bearer nope"), ("Authorization", f"Bearer {TOKEN}")],
        401,
    ),
    "a token for another model": ([("Authorization", f"Bearer {CHARS_ONLY}")], 403),
}


@pytest.mark.parametrize("name", AUTHORIZATIONS)
def test_garbage_where_a_token_is_due_is_refused(secured, name):
    """Infer and generate alike; the message never repeats what the client sent."""
    headers, status = AUTHORIZATIONS[name]
    text = json.dumps({"text_input": "ab", "parameters": {"max_steps": 2}}).encode()
    for target, body in ((f"/v2/models/{TEXT}/infer", infer_body()), (GENERATE, text)):
        answer = exchange(secured.http_port, post(body, headers, target=target))
        refused(answer, status)
        assert answer is not None
        if status == 401:
            assert answer.header("www-authenticate") == "Bearer"
        assert not any(value[7:] and value[7:] in answer.error for _, value in headers if len(value) > 8)
    good_infer(secured.http_port, {"Authorization": f"Bearer {TOKEN}"})
    assert exchange(secured.http_port, request("GET", "/v2/health/ready")).status == 200  # probes need none
