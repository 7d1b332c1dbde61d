"""Memory under hostile HTTP, measured on a `lstmserve serve` process (VmHWM, the peak resident set,
reset before each load through /proc/PID/clear_refs): the peak stays within a bound derived from the
settings, whatever the clients send.

Where the server's bytes go, and the bound on each (MESSAGE = --max-message-bytes, INFLIGHT =
--max-inflight-bytes, CONNECTIONS = --http-max-connections):

    admitted calls: request, decoded form, JSON objects, answer     INFLIGHT (what admission reserves)
    bodies being read, each in a receive turn (chunks, then joined)  INFLIGHT // (2 MESSAGE) turns x 2 MESSAGE
    each connection: uvicorn's unread body (it stops reading past     CONNECTIONS x (64 KiB + 256 KiB)
      64 KiB) and one read from the socket (asyncio's 256 KiB)
    one call decoded at a time (the event loop's): numpy's float64   2 MESSAGE
      copy of a JSON list before it is float32

    bound = 2 INFLIGHT + CONNECTIONS x 320 KiB + 2 MESSAGE + WORKING

WORKING is what one good call of the largest size takes beyond that (onnxruntime's buffers, the
allocator's slack), measured at the start of each test on the server itself, not copied from a run.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from lstmserve.server.memory import TRIM_SECONDS
from lstmserve.server.web.connection import _PIPELINED

from ..raw_http import Malformed, RawHttp, exchange, request
from ..servers import ServerProcess
from .http_hostile import INFER, good_infer, hostile_server

MB = 1e6  # memory_mb() reports MB
MESSAGE, INFLIGHT, CONNECTIONS = 1 << 20, 16 << 20, 64
RECEIVE_SECONDS = IDLE_SECONDS = 2
PER_CONNECTION = (64 + 256) << 10
BOUND = 2 * INFLIGHT + CONNECTIONS * PER_CONNECTION + 2 * MESSAGE
# The largest chunk chars takes: 2 rows of 16384 steps (--max-request-row-steps), 655 kB of JSON
# floats; its answer is its final state alone (a few hundred bytes).
ROWS, STEPS = 2, 16_384


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from hostile_server(
        tmp_path_factory.mktemp("memory"),
        "--max-message-bytes", str(MESSAGE),
        "--max-inflight-bytes", str(INFLIGHT),
        "--http-max-connections", str(CONNECTIONS),
        "--receive-seconds", str(RECEIVE_SECONDS),
        "--http-idle-seconds", str(IDLE_SECONDS),
    )  # fmt: skip


def floats_body(rows: int = ROWS, steps: int = STEPS, nested: bool = False) -> bytes:
    """An infer request for chars of (rows, steps, 5) "0.5"s, flat or nested as the shape (a list per
    step: more objects per byte of JSON), asking for its final state alone."""
    step = b",".join([b"0.5"] * 5)
    if nested:
        data = b"[" + b",".join([b"[" + b",".join([b"[" + step + b"]"] * steps) + b"]"] * rows) + b"]"
    else:
        data = b"[" + b",".join([step] * (rows * steps)) + b"]"
    tensor = {"name": "input", "datatype": "FP32", "shape": [rows, steps, 5], "data": "@"}
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "final_h_1"}]}).encode().replace(b'"@"', data)


def reset_peak(server: ServerProcess) -> float:
    """Start VmHWM again from the resident set now; that resident set, in bytes."""
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")
    return server.memory_mb()["rss_mb"] * MB


def working_set(server: ServerProcess, base: float) -> float:
    """What one largest good call takes at its peak, above `base`."""
    answer = exchange(server.http_port, request("POST", INFER, body=floats_body()), timeout=60)
    assert answer is not None and answer.status == 200, answer
    return server.memory_mb()["peak_rss_mb"] * MB - base


def at_once(count: int, send) -> list:
    """`send(i)` on `count` threads at once; what each returned."""
    results: list = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        results[i] = send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def peak_growth(server: ServerProcess, load) -> float:
    """The peak resident set during `load()` above the resident set before it, once the heap's free
    pages have gone back (server/memory.py trims them every TRIM_SECONDS), in bytes; and the server
    still serves after it."""
    time.sleep(1.5 * TRIM_SECONDS)
    base = reset_peak(server)
    working = working_set(server, base)
    reset_peak(server)  # what the working set's call left in the heap counts against the load below
    load()
    growth = server.memory_mb()["peak_rss_mb"] * MB - base
    bound = BOUND + working
    print(f"peak growth {growth / MB:.1f} MB, bound {bound / MB:.1f} MB (working set {working / MB:.1f})")
    assert growth < bound, (growth / MB, BOUND / MB, working / MB)
    good_infer(server.http_port)
    return growth


def status(answer) -> int | None:
    return None if answer is None else answer.status


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_many_largest_json_bodies_at_once(server, nested):
    """96 clients at once (past --http-max-connections: some are closed at once) send the largest
    chunk, or a MiB of floats over the steps limit (parsed, then refused): each is admitted, told to
    retry, or refused, within the bound."""
    good, over = floats_body(nested=nested), floats_body(steps=22_000 if nested else 25_000, nested=nested)
    assert len(good) <= len(over) <= MESSAGE

    def send(i: int):
        return status(
            exchange(server.http_port, request("POST", INFER, body=(good, over)[i % 2]), timeout=60)
        )

    codes: list = []
    peak_growth(server, lambda: codes.extend(at_once(96, send)))
    # None: a connection past --http-max-connections, closed at once
    assert set(codes) <= {200, 413, 429, None} and 200 in codes, codes


def test_slow_bodies_hold_their_turns_not_more(server):
    """CONNECTIONS - 1 clients each send half of a 1 MiB body and stop: refused with 408."""

    def send(i: int):
        with RawHttp(server.http_port, timeout=30) as connection:
            connection.send(request("POST", INFER, {"Content-Length": str(MESSAGE)}) + b"[" * (MESSAGE // 2))
            return status(connection.response())

    codes: list = []
    peak_growth(server, lambda: codes.extend(at_once(CONNECTIONS - 1, send)))
    assert set(codes) <= {408, None}, codes


def test_bodies_declared_too_large_are_refused_unread(server):
    """A thousand requests declaring 10 GB bodies, 32 at a time, then sending a MiB of one anyway."""

    def send(i: int):
        codes = []
        for _ in range(32):
            with RawHttp(server.http_port, timeout=30) as connection:
                connection.send(request("POST", INFER, {"Content-Length": str(10**10)}))
                connection.send(b"0" * MESSAGE)
                codes.append(status(connection.response()))
        return codes

    results: list = []
    peak_growth(server, lambda: results.extend(at_once(32, send)))
    assert {code for codes in results for code in codes} <= {413, None}, results


def test_strings_as_data_are_refused_before_numpy_reads_them(server):
    """A 1 MiB body of one 500,000-character string and 170,000 empty ones: as a numpy array, 340 GB."""
    data = ["x" * 500_000] + [""] * 169_999
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 34_000, 5], "data": data}
    body = json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()
    assert len(body) <= MESSAGE
    codes: list = []
    peak_growth(
        server,
        lambda: codes.extend(
            at_once(8, lambda i: status(exchange(server.http_port, request("POST", INFER, body=body))))
        ),
    )
    assert set(codes) <= {400, 429}, codes


def test_floods_of_pipelined_requests(server):
    """Every connection sends a MiB of pipelined requests (30,000 of them)."""
    one = request("GET", "/v2/health/live")

    def send(i: int):
        with RawHttp(server.http_port, timeout=30) as connection:
            connection.send(one * (MESSAGE // len(one)))
            answers = 0
            try:
                while connection.response() is not None:
                    answers += 1
            except Malformed:
                pass
            return answers

    answers: list = []
    peak_growth(server, lambda: answers.extend(at_once(CONNECTIONS - 1, send)))
    assert max(answers) <= _PIPELINED + 1, answers


def test_clients_that_never_read(server):
    """CONNECTIONS - 1 clients ask for six 830 kB answers each (10000 steps of output) and read none:
    each is closed once its answers have stopped moving (--http-idle-seconds)."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 10_000, 5], "data": [1] * 50_000}
    body = json.dumps({"inputs": [tensor], "outputs": [{"name": "output"}]}).encode()

    def send(i: int) -> RawHttp:
        connection = RawHttp(server.http_port, timeout=30, receive_buffer=4096)
        for _ in range(6):
            connection.send(request("POST", INFER, body=body))
        return connection

    def load() -> None:
        connections = at_once(CONNECTIONS - 1, send)
        time.sleep(2 * IDLE_SECONDS)  # reading nothing while the server gives up on them (not a bound)
        for connection in connections:
            connection.close()

    peak_growth(server, load)


def test_thousands_of_silent_connections(server):
    """3000 connections opened and left silent: past --http-max-connections closed at once, the rest
    refused with 408 after --receive-seconds."""
    opened_in: list = []

    def send(i: int):
        started, opened = time.monotonic(), []
        for _ in range(100):
            try:
                opened.append(RawHttp(server.http_port, timeout=30))
            except OSError:  # the listen backlog full for a moment: a refused connection is the point
                pass
        opened_in.append(time.monotonic() - started)
        statuses = []
        for connection in opened:
            try:
                statuses.append(status(connection.response()))
            except Malformed:
                statuses.append(None)
            connection.close()
        return statuses

    results: list = []
    peak_growth(server, lambda: results.extend(at_once(30, send)))
    statuses = [code for codes in results for code in codes]
    # A slot held by a silent connection comes free after --receive-seconds: no more than CONNECTIONS
    # are let in per such while the connections were being opened.
    assert set(statuses) <= {408, None}, statuses
    assert statuses.count(408) <= CONNECTIONS * (1 + max(opened_in) // RECEIVE_SECONDS), statuses
