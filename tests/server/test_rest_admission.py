"""Admission over HTTP, on the bounds gRPC shares: past --max-calls a call is 429 with Retry-After and
the limit's name; while the server stops it is not ready, new calls are 503, and the calls in flight
are still answered."""

from __future__ import annotations

import socket
import threading
import time
from http.client import HTTPResponse

import numpy as np
import orjson
import pytest

from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer, free_port
from .rest_calls import infer, infer_body, model_path, post_infer, session
from .test_metrics import scrape, value

X = np.ones((2, 3, 5), np.float32)
OUTPUTS = ["output", "final_c_0", "final_h_0", "final_c_1", "final_h_1", "logits"]  # chars v2's


class HeldCall:
    """An infer call whose headers and half its body have been sent: admitted, it waits on its
    client for the rest (within --receive-seconds) and holds its place among the calls in flight."""

    def __init__(self, port: int):
        body, _ = infer_body({"input": X})
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        head = (
            f"POST {model_path(CHARS)}/infer HTTP/1.1\r\nHost: lstmserve\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[: len(body) // 2])
        self.rest = body[len(body) // 2 :]

    def finish(self) -> tuple[int, dict]:
        """The rest of the body sent: the call's status and JSON answer."""
        self.sock.sendall(self.rest)
        answer = HTTPResponse(self.sock)
        answer.begin()
        body = orjson.loads(answer.read())
        self.sock.close()
        return answer.status, body


def names(body: dict) -> list[str]:
    return [output["name"] for output in body["outputs"]]


def in_flight(port: int, calls: int) -> None:
    """Wait until the server counts `calls` unary calls in flight."""
    deadline = time.monotonic() + 10
    while value(scrape(port), "lstmserve_calls_in_flight") != calls:
        assert time.monotonic() < deadline, "the held call never arrived"
        time.sleep(0.02)


def serve(repository, **settings) -> InProcessServer:
    server = InProcessServer(Settings(repository=str(repository), metrics_port=free_port(), **settings))
    server.metrics_port = server.settings.metrics_port
    return server.start()


@pytest.fixture(scope="module")
def one_call(repository):
    server = serve(repository, max_calls=1)
    yield server
    server.stop()


def test_a_call_past_max_calls_is_429_and_one_after_it_is_served(one_call):
    server, held = one_call, HeldCall(one_call.http_port)
    with session() as http:
        in_flight(server.metrics_port, 1)
        answer = post_infer(http, server.http_url, CHARS, {"input": X})
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1" and answer.headers["lstmserve-limit"] == "max_calls"
        assert "1 calls in flight (--max-calls 1); retry shortly" in answer.json()["error"]
        status, body = held.finish()  # the call that held the place is answered as usual
        assert status == 200 and names(body) == OUTPUTS
        in_flight(server.metrics_port, 0)
        assert infer(http, server.http_url, CHARS, {"input": X}).arrays["output"].shape == (2, 3, 7)
    refused = dict(model="-", protocol="http", method="ModelInfer", code="RESOURCE_EXHAUSTED")
    assert value(scrape(server.metrics_port), "lstmserve_requests_total", **refused) == 1


def test_while_stopping_ready_is_400_new_calls_503_and_calls_in_flight_finish(repository):
    server = serve(repository, grace_seconds=30)
    held = HeldCall(server.http_port)
    url = server.http_url
    with session() as http:
        in_flight(server.metrics_port, 1)
        stopping = threading.Thread(target=server.stop, daemon=True)
        stopping.start()
        deadline = time.monotonic() + 10
        while http.get(url + "/v2/health/ready", timeout=5).status_code == 200:
            assert time.monotonic() < deadline, "still ready while stopping"
            time.sleep(0.02)
        ready = http.get(url + "/v2/health/ready", timeout=5)
        assert (ready.status_code, ready.content) == (400, b"")
        assert http.get(url + "/v2/health/live", timeout=5).status_code == 200  # alive: do not restart it
        answer = post_infer(http, url, CHARS, {"input": X})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.headers["connection"] == "close"  # keep-alive would bring the client back here
        assert "the server is shutting down" in answer.json()["error"]
        assert http.get(url + model_path(CHARS), timeout=5).status_code == 503
    status, body = held.finish()
    assert status == 200 and names(body) == OUTPUTS
    stopping.join(30)
    assert not stopping.is_alive()


def test_the_held_call_helper_sends_a_whole_request(one_call):
    """HeldCall's request, finished at once, is an ordinary call: what the tests above hold is real."""
    status, body = HeldCall(one_call.http_port).finish()
    assert status == 200 and body["model_name"] == CHARS


def test_a_json_body_no_wait_can_admit_is_not_told_to_retry(repository):
    """At the smallest --max-inflight-bytes the settings allow, a request the server serves in binary
    and whose JSON is within --max-message-bytes is answered, or refused for good: never 429 (retry
    shortly) on an idle server, where no retry can ever get in."""
    server = serve(repository, max_message_bytes=1 << 20, max_inflight_bytes=4 << 20)
    x = np.random.default_rng(0).random((1, 8000, 5), dtype=np.float32)
    try:
        with session() as http:
            assert infer(http, server.http_url, CHARS, {"input": x}, binary=True).arrays["logits"].shape
            assert len(infer_body({"input": x})[0]) < 1 << 20
            answer = post_infer(http, server.http_url, CHARS, {"input": x})
            assert answer.status_code != 429 and "retry-after" not in answer.headers, answer.text
            # refused for good, naming the limit that no wait can get it past, and what to do instead
            assert answer.status_code == 413 and answer.headers["lstmserve-limit"] == "max_inflight_bytes"
            assert "binary" in answer.json()["error"]
    finally:
        server.stop()


def test_a_client_that_goes_ends_its_call_and_frees_its_place(tmp_path):
    """A unary call whose client disconnects while it computes ends then, counted CANCELLED, and its
    place among --max-calls is free again, as gRPC cancels such a call (before, it ran to its end,
    counted OK). The run itself, in onnxruntime, cannot be interrupted; the call's wait for it is."""
    from lstmserve.export.publish import export_checkpoint

    from ..conftest import random_checkpoint

    big = random_checkpoint(
        tmp_path / "big.pt", 3, input_size=8, hidden_sizes=(256, 256), head="classify_last", num_outputs=2
    )
    export_checkpoint(big, tmp_path / "models", "big")
    server = serve(tmp_path / "models", max_calls=1, max_batch_rows=0)
    # 32768 row-steps of a 2 x 256 stack: about 17 GFLOP, a run of most of a second or more
    body, headers = infer_body({"input": np.ones((1024, 32, 8), np.float32)}, binary=True, outputs=["logits"])
    try:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=20) as sock:
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            sock.sendall(
                f"POST {model_path('big')}/infer HTTP/1.1\r\nHost: lstmserve\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            in_flight(server.metrics_port, 1)
        in_flight(server.metrics_port, 0)  # its place is free once its client has gone
        samples = scrape(server.metrics_port)
        cancelled = dict(model="big:1", protocol="http", method="ModelInfer", code="CANCELLED")
        assert value(samples, "lstmserve_requests_total", **cancelled) == 1
        assert value(samples, "lstmserve_requests_total", **{**cancelled, "code": "OK"}) == 0
    finally:
        server.stop()
