"""Slow, silent, greedy and deaf HTTP clients against a `lstmserve serve` process with short timeouts:
each is answered with a 4xx or closed, within the bound its setting gives, and clients that behave
are still served once it is over. No timing is asserted: each test waits for the outcome, with a
generous guard so a server that never acts fails instead of hanging.

    slow headers, slow bodies, silence     408 and closed (--receive-seconds)
    idle between requests                   closed (--http-idle-seconds)
    past --http-max-connections             closed at once; served again once the idle ones are gone
    pipelined                               answered in order; a flood is closed, not parsed
    never reads its answers                 closed once its answers stop leaving; others are served
"""

from __future__ import annotations

import json
import re
import socket
import time

import numpy as np
import pytest

from lstmserve.server.web.connection import _PIPELINED

from ..raw_http import Malformed, RawHttp, exchange, request
from ..servers import ServerProcess
from .http_hostile import (
    CHARS,
    GENERATE,
    INFER,
    good_infer,
    hostile_repository,
    hostile_server,
    infer_body,
    refused,
    trouble_in,
)

RECEIVE_SECONDS, IDLE_SECONDS, MAX_CONNECTIONS = 1, 2, 32
MESSAGE_BYTES = 1 << 20
GUARD = 30  # seconds any outcome below may take before its test fails: many times its setting


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # The least --max-inflight-bytes the settings allow (4 x the message limit): a few calls that
    # hold their reservations show at once as refusals for everyone else.
    yield from hostile_server(
        tmp_path_factory.mktemp("clients"),
        "--receive-seconds", str(RECEIVE_SECONDS),
        "--http-idle-seconds", str(IDLE_SECONDS),
        "--stream-idle-seconds", str(IDLE_SECONDS),
        "--http-max-connections", str(MAX_CONNECTIONS),
        "--max-message-bytes", str(MESSAGE_BYTES),
        "--max-inflight-bytes", str(4 * MESSAGE_BYTES),
    )  # fmt: skip


def served_again(port: int, body: bytes | None = None) -> None:
    """A well-behaved client, retrying on a fresh connection as clients do, is served within GUARD."""
    for _ in range(GUARD * 10):
        try:
            answer = exchange(port, request("POST", INFER, body=body or infer_body()), timeout=GUARD)
        except OSError:
            answer = None
        if answer is not None and answer.status == 200:
            return
        assert answer is None or answer.status == 429, answer
        time.sleep(0.1)
    raise AssertionError("a good client was not served again")


def test_headers_that_trickle_in_are_refused_with_408(server):
    """A byte of header every 0.1 s keeps the connection busy but never completes a request."""
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        for byte in request("GET", "/v2", {"X-Slow": "a" * 1000}):
            if not connection.send(bytes([byte])) or connection.closed(within=0.1):
                break
        else:
            raise AssertionError("trickling headers were not refused")
        refused(connection.response(), 408, "--receive-seconds")


def test_a_connection_that_sends_nothing_is_refused_with_408(server):
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        refused(connection.response(), 408, "--receive-seconds")
        assert connection.closed(within=GUARD)


def test_a_body_that_trickles_in_is_refused_with_408(server):
    body = infer_body(steps=200)
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        connection.send(request("POST", INFER, {"Content-Length": str(len(body))}))
        for byte in body:
            if not connection.send(bytes([byte])) or connection.closed(within=0.1):
                break
        else:
            raise AssertionError("a trickling body was not refused")
        refused(connection.response(), 408, "--receive-seconds")
        assert connection.closed(within=GUARD)
    good_infer(server.http_port)


def test_an_idle_keep_alive_connection_is_closed(server):
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        connection.send(request("GET", "/v2/health/live"))
        answer = connection.response()
        assert answer is not None and answer.status == 200 and answer.header("connection") is None
        assert connection.closed(within=GUARD)


def test_connections_past_the_limit_are_closed_and_good_clients_served_after(server):
    """MAX_CONNECTIONS idle keep-alive connections hold every slot: 2000 more, opened in one burst,
    are closed without an answer (a few may be let in as the first ones' idle time runs out). The
    idle ones are closed after --http-idle-seconds, and a good client is served again."""
    idle = []
    for _ in range(MAX_CONNECTIONS):
        connection = RawHttp(server.http_port, timeout=GUARD)
        connection.send(request("GET", "/v2/health/live"))
        answer = connection.response()
        if answer is None:  # a slot still held by an earlier test's connection
            connection.close()
            continue
        idle.append(connection)
    flood, started = [], time.monotonic()
    for _ in range(2000):
        connection = RawHttp(server.http_port, timeout=GUARD)
        connection.send(request("GET", "/v2/health/live"))
        flood.append(connection)
    answered, elapsed = 0, time.monotonic() - started
    for connection in flood:
        answered += connection.response() is not None
        connection.close()
    # Slots come free no faster than idle connections time out: once per --http-idle-seconds each
    # (the burst takes a fraction of that; a slow machine's longer burst lets more in, no more).
    assert answered <= MAX_CONNECTIONS * (1 + elapsed // IDLE_SECONDS), (answered, elapsed)
    for connection in idle:
        assert connection.closed(within=GUARD)
        connection.close()
    served_again(server.http_port)


def test_pipelined_requests_are_answered_in_order(server):
    asked = [
        request("GET", f"/v2/models/{CHARS}"),
        request("POST", INFER, body=infer_body(steps=4)),
        request("GET", "/nowhere"),
        request("POST", INFER, body=infer_body(steps=2)),
        request("GET", "/v2/health/live"),
    ]
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        connection.send(b"".join(asked))
        answers = [connection.response() for _ in asked]
    assert [answer.status if answer else None for answer in answers] == [200, 200, 404, 200, 200]
    assert answers[0].json()["name"] == CHARS
    assert answers[1].json()["outputs"][0]["shape"] == [1, 4, 7]
    assert answers[3].json()["outputs"][0]["shape"] == [1, 2, 7]


def test_a_flood_of_pipelined_requests_is_closed_not_parsed(server):
    """A MiB of pipelined requests (30,000 of them): the connection is closed once more than the
    pipelining limit wait, with at most that many answered."""
    one = request("GET", "/v2/health/live")
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        connection.send(one * ((1 << 20) // len(one)))
        answers = 0
        while connection.response() is not None:
            answers += 1
    assert answers <= _PIPELINED + 1, answers
    served_again(server.http_port)


def big_answers_body() -> bytes:
    """An infer request of 150 kB whose answer (10000 steps of output) is 830 kB of JSON: with the
    request's share (10 x its bytes, as the edge reserves JSON) 2.3 MB of --max-inflight-bytes."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 10_000, 5], "data": [1] * 50_000}
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "output"}]}).encode()


def answers_until_cut(connection: RawHttp) -> int:
    """The answers a client gets once it reads at last, until the connection ends or one is cut."""
    count = 0
    try:
        while connection.response() is not None:
            count += 1
    except Malformed:  # closed in the middle of an answer: what a server that gave up on it does
        pass
    return count


def test_clients_that_never_read_their_answers_are_closed_and_others_served(server):
    """Two connections ask for six 830 kB answers each and read none: the answers fill the socket
    buffers (a few MB of the kernel's), and a call then waits to write its answer with its 2.3 MB
    reserved, which leaves too little of the 4 MiB for another such call: it is refused (429) until
    the two are closed, once their answers have not moved for --http-idle-seconds. Reading at last,
    one that stalled finds its answers cut."""
    body, asked = big_answers_body(), 6
    deaf = []
    for _ in range(2):
        connection = RawHttp(server.http_port, timeout=GUARD, receive_buffer=4096)
        for _ in range(asked):
            connection.send(request("POST", INFER, body=body))
        deaf.append(connection)
        time.sleep(0.5)  # one after the other, so that each is admitted or refused whole (not a bound)
    served_again(server.http_port, body)
    got = [answers_until_cut(connection) for connection in deaf]  # one may have had 429s, not stalled
    assert min(got) < asked, got
    for connection in deaf:
        connection.close()


def test_a_stream_whose_client_never_reads_is_closed(server):
    """Server-Sent Events for 64 rows and 4096 steps (12 MB), never read: the server gives up on
    them (the stream is cut, not ended), and logs no traceback."""
    rows = 64
    tensor = {"name": "input", "datatype": "FP32", "shape": [rows, 1, 4], "data": [1.0] * (rows * 4)}
    body = json.dumps({"inputs": [tensor], "parameters": {"max_steps": 4096}}).encode()
    deaf = []
    for _ in range(2):
        connection = RawHttp(server.http_port, timeout=GUARD, receive_buffer=4096)
        connection.send(request("POST", GENERATE, body=body))
        deaf.append(connection)
    time.sleep(3 * IDLE_SECONDS)  # the stream watchdog's two rounds (a traceback, before), the write bound
    for connection in deaf:
        with pytest.raises(Malformed, match="stops"):
            connection.response()
        connection.close()
    served_again(server.http_port)
    log = "".join(server.log)
    assert not trouble_in(log), log


def test_headers_that_trickle_in_behind_a_long_answer_are_refused(tmp_path):
    """The next request's headers begun behind a streamed generation, then a byte now and then: their
    time runs on while the answer goes out (before, the header timer gave up during the answer, and
    each byte after it cancelled the keep-alive timer: the connection stayed open for good). Its own
    server, with a --receive-seconds shorter than a 4096-step generation takes (0.7 s here)."""
    server = ServerProcess(hostile_repository(tmp_path), "--receive-seconds", "0.05")
    generation = json.dumps({"text_input": "ab", "parameters": {"max_steps": 4096}}).encode()
    try:
        with RawHttp(server.http_port, timeout=GUARD) as connection:
            connection.send(request("POST", GENERATE, body=generation) + b"GET /v2 HTTP/1.1\r\nX-Slow: ")
            deadline = time.monotonic() + GUARD
            while not connection.closed(within=0.02):  # reads the events as they come
                assert time.monotonic() < deadline, "headers trickling in behind an answer were not refused"
                connection.send(b"a")
            assert b'"step":0' in connection.buffer  # the generation was answered to its end first
    finally:
        assert server.terminate() == 0


def test_a_blank_line_after_an_answer_does_not_keep_the_connection(server):
    """A CRLF between requests (which the parser skips, beginning no request) cancels the keep-alive
    timer as any byte does: it gets a request's time to become one, then the connection closes."""
    with RawHttp(server.http_port, timeout=GUARD) as connection:
        connection.send(request("GET", "/v2/health/live"))
        assert connection.response().status == 200
        connection.send(b"\r\n")
        assert connection.closed(within=GUARD)


def test_a_slow_reader_that_keeps_reading_gets_its_whole_answer(tmp_path):
    """A client taking a 9 MB answer at about 2 MB/s, longer than the write timeout, is not cut off:
    the timeout is for clients that stop taking their answer, not for slow ones."""
    server = ServerProcess(
        hostile_repository(tmp_path),
        "--http-idle-seconds", "1", "--stream-idle-seconds", "1",  # write_seconds: 1
        "--max-message-bytes", str(16 << 20), "--max-inflight-bytes", str(128 << 20),
        "--max-request-row-steps", str(1 << 20), "--max-request-steps", str(1 << 16),
    )  # fmt: skip
    x = np.ones((16, 20000, 5), np.float32)  # (batch, time, input_size) of chars: 9 MB of output
    header = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                          "parameters": {"binary_data_size": x.nbytes}}],
              "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}  # fmt: skip
    head = json.dumps(header).encode()
    try:
        sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=GUARD)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        with sock:
            sock.sendall(
                request(
                    "POST", INFER, {"Inference-Header-Content-Length": str(len(head))}, head + x.tobytes()
                )
            )
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(1 << 16)
            status, _, rest = received.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", status, re.IGNORECASE).group(1))
            while len(rest) < length:
                chunk = sock.recv(1 << 16)
                assert chunk, f"cut off after {len(rest)} of {length} bytes"
                rest += chunk
                time.sleep(0.03)  # about 2 MB/s
        assert status.startswith(b"HTTP/1.1 200") and length > 8 << 20
    finally:
        assert server.terminate() == 0
