"""Hostile HTTP bodies, each sent on a raw connection to a `lstmserve serve` process: each gets a 4xx
with a short message, or a closed connection; never a 500, never a traceback in the server's log;
and the server answers a good request after each.

Sizes declared and sent (lying, chunked, over the limit), JSON the parser or the shapes must refuse,
binary tensors whose lengths lie, generate_stream's parameters. The request line, headers, paths and
tokens are test_http_requests.py's; slow and silent clients, connection limits and pipelining
test_http_clients.py's.
"""

from __future__ import annotations

import json
import struct

import pytest

from ..raw_http import RawHttp, chunked, exchange, request
from .http_hostile import (
    GENERATE,
    good_infer,
    hostile_server,
    infer_body,
    post,
    refused,
)

MESSAGE_BYTES = 1 << 20  # --max-message-bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A request that never completes is refused within a second, not ten; an idle connection closed
    # within a second, not thirty.
    yield from hostile_server(
        tmp_path_factory.mktemp("hostile"),
        "--max-message-bytes", str(MESSAGE_BYTES), "--receive-seconds", "1", "--http-idle-seconds", "1",
    )  # fmt: skip


def json_body(**tensor) -> bytes:
    """An infer request for chars whose one input is `tensor` (over a good one's fields)."""
    good = {"name": "input", "datatype": "FP32", "shape": [1, 2, 5], "data": [0.5] * 10}
    return json.dumps({"inputs": [{**good, **tensor}]}).encode()


def generate_body(parameters: object) -> bytes:
    return json.dumps({"text_input": "ab", "parameters": parameters}).encode()


def raw_data(text: bytes, **tensor) -> bytes:
    """json_body with `text` as the input's data, verbatim: JSON that Python's json would not write."""
    return json_body(data="@", **tensor).replace(b'"@"', text)


def binary_body(header: dict, tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A body of JSON header and binary tensors, and its Inference-Header-Content-Length."""
    data = json.dumps(header).encode()
    return data + tensors, {"Inference-Header-Content-Length": str(len(data))}


def binary_input(size: object, shape=(1, 2, 5)) -> dict:
    tensor = {
        "name": "input",
        "datatype": "FP32",
        "shape": list(shape),
        "parameters": {"binary_data_size": size},
    }
    return {"inputs": [tensor]}


TEN = struct.pack("<10f", *[0.5] * 10)  # (1, 2, 5) float32: 40 bytes
TEN_MILLION = 10_000_000  # elements of a `data` list that must be refused by its size, unread

# name -> (the request's bytes, the status, words its message must hold)
CASES = {
    # --- bodies: their sizes ----------------------------------------------------------------------
    "a Content-Length of 30 digits": (post(b"", {"Content-Length": "9" * 30}), 400, ["Invalid HTTP"]),
    "two Content-Lengths": (
        post(b"12345", [("Content-Length", "5"), ("Content-Length", "6")]),
        400,
        ["Invalid HTTP"],
    ),
    "Content-Length and chunked": (
        post(chunked(b"12345"), [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
        400,
        [],
    ),
    "a signed Content-Length": (post(b"12345", {"Content-Length": "+5"}), 400, ["Invalid HTTP"]),
    "a Content-Length shorter than the body": (post(infer_body(), {"Content-Length": "10"}), 400, []),
    "a chunk size that is not hex": (
        post(b"zz\r\n12\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"}),
        400,
        ["Invalid HTTP"],
    ),
    "gzip": (post(b"\x1f\x8b", {"Content-Encoding": "gzip"}), 415, ["identity"]),
    # --- JSON -------------------------------------------------------------------------------------
    "an empty body": (post(b""), 400, ["not JSON"]),
    "not JSON": (post(b"{inputs: []}"), 400, ["not JSON"]),
    "invalid UTF-8": (post(b'{"inputs": [], "id": "\xff\xfe"}'), 400, ["not JSON", "UTF-8"]),
    "a JSON array": (post(b"[1, 2, 3]"), 400, ["JSON object"]),
    "lists nested past the parser's depth": (post(b"[" * 100_000 + b"]" * 100_000), 400, ["not JSON"]),
    "data nested 1000 deep": (post(raw_data(b"[" * 1000 + b"1" + b"]" * 1000)), 400, ["data must be"]),
    "1e999": (post(raw_data(b"[1e999]")), 400, ["not JSON"]),
    "NaN": (post(raw_data(b"[NaN]")), 400, ["not JSON"]),
    "an integer past float32": (
        post(raw_data(b"[0.5,0.5,0.5,0.5,%s]" % (b"9" * 39), shape=[1, 1, 5])),
        400,
        ["NaN or Inf"],
    ),
    "an integer past int64 in sequence_lengths": (
        post(
            json.dumps(
                {
                    "inputs": [
                        json.loads(json_body())["inputs"][0],
                        {"name": "sequence_lengths", "datatype": "INT64", "shape": [1], "data": [2**64 - 1]},
                    ]
                }
            ).encode()
        ),
        400,
        ["out of INT64's range"],
    ),
    # A string of 300,000 characters and 1999 empty ones: numpy would make a 2.4 GB array of them.
    "strings as data": (
        post(json_body(shape=[1, 400, 5], data=["x" * 300_000] + [""] * 1999)),
        400,
        ["data must be"],
    ),
    "booleans as data": (post(json_body(data=[True] * 10)), 400, ["data must be"]),
    "objects as data": (post(json_body(data=[{}] * 10)), 400, ["data must be"]),
    "ragged data": (post(json_body(data=[[[0.5] * 5, [0.5] * 4]])), 400, ["data must be"]),
    "a shape of strings": (post(json_body(shape=["1", "2", "5"])), 400, ["shape"]),
    "a shape of 2**62 rows": (post(json_body(shape=[2**62, 2, 5])), 400, ["input"]),
    "a datatype that is a list": (post(json_body(datatype=["FP32"])), 400, ["datatype"]),
    "inputs that is an object": (post(b'{"inputs": {"name": "input"}}'), 400, ['"inputs"']),
    "parameters that is a list": (post(b'{"inputs": [], "parameters": [1]}'), 400, ['"parameters"']),
    "an id that is a number": (post(b'{"inputs": [], "id": 7}'), 400, []),
    # --- binary tensors ---------------------------------------------------------------------------
    "a header length past the body": (
        post(binary_body(binary_input(40), TEN)[0], {"Inference-Header-Content-Length": "99999"}),
        400,
        ["Inference-Header-Content-Length"],
    ),
    "a negative header length": (
        post(binary_body(binary_input(40), TEN)[0], {"Inference-Header-Content-Length": "-5"}),
        400,
        ["Inference-Header-Content-Length"],
    ),
    "a header length that is not a number": (
        post(binary_body(binary_input(40), TEN)[0], {"Inference-Header-Content-Length": "0x20"}),
        400,
        ["Inference-Header-Content-Length"],
    ),
    "a header length of 20 digits": (
        post(binary_body(binary_input(40), TEN)[0], {"Inference-Header-Content-Length": "9" * 20}),
        400,
        ["Inference-Header-Content-Length"],
    ),
    "a header length of 0": (
        post(binary_body(binary_input(40), TEN)[0], {"Inference-Header-Content-Length": "0"}),
        400,
        ["not JSON"],
    ),
    "a binary_data_size past the data": (
        post(*binary_body(binary_input(41), TEN)),
        400,
        ["binary_data_size"],
    ),
    "a binary_data_size short of the data": (post(*binary_body(binary_input(36), TEN)), 400, ["do not fit"]),
    "bytes beyond the inputs' binary_data_size": (
        post(*binary_body(binary_input(40), TEN + b"more")),
        400,
        ["follow the JSON header"],
    ),
    "a negative binary_data_size": (post(*binary_body(binary_input(-40), TEN)), 400, ["binary_data_size"]),
    "a binary_data_size that is a string": (
        post(*binary_body(binary_input("40"), TEN)),
        400,
        ["binary_data_size"],
    ),
    "a binary_data_size that is true": (
        post(*binary_body(binary_input(True), TEN)),
        400,
        ["binary_data_size"],
    ),
    "a binary_data_size of 2**64": (
        post(*binary_body(binary_input(2**64 - 1), TEN)),
        400,
        ["binary_data_size"],
    ),
    "binary data that does not fit the shape": (
        post(*binary_body(binary_input(40, shape=(1, 3, 5)), TEN)),
        400,
        ["do not fit"],
    ),
    # --- generate_stream's parameters -----------------------------------------------------------
    **{
        f"generate with {name}": (post(generate_body(parameters), target=GENERATE), 400, words)
        for name, parameters, words in [
            ("stop: null", {"stop": None}, ["max_steps"]),
            ("max_steps: null", {"max_steps": None}, ["max_steps"]),
            ("temperature: null", {"temperature": None}, ["max_steps"]),
            ("a negative seed", {"max_steps": 2, "seed": -1}, ["seed"]),
            ("a seed of 2**64", {"max_steps": 2, "seed": 2**64}, ["seed"]),
            (
                "a control character as feedback",
                {"max_steps": 2, "feedback": "\x1f\n"},
                ["\\x1f", "feedback"],
            ),
            ("40,000 characters as feedback", {"max_steps": 2, "feedback": "\u20ac" * 40_000}, ["feedback"]),
            ("max_steps as a string", {"max_steps": "2"}, ["max_steps"]),
            ("max_steps past the limit", {"max_steps": 10**6}, ["--max-generate-steps"]),
            ("2000 stop_classes", {"max_steps": 2, "stop_classes": [0] * 2000}, ["stop_classes"]),
            ("a stop character the model lacks", {"max_steps": 2, "stop": "\x00"}, ["\\x00"]),
        ]
    },
    "generate with text_input of 20,000 characters": (
        post(
            json.dumps({"text_input": "a" * 20_000, "parameters": {"max_steps": 2}}).encode(), target=GENERATE
        ),
        413,
        ["--max-request-steps"],
    ),
    "generate with a character the model lacks": (
        post(
            json.dumps({"text_input": "ab\u0000\n", "parameters": {"max_steps": 2}}).encode(), target=GENERATE
        ),
        400,
        ["\\x00"],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_each_hostile_request_is_refused_briefly(server, name):
    data, status, words = CASES[name]
    refused(exchange(server.http_port, data), status, *words)
    good_infer(server.http_port)


def test_a_ten_million_element_body_is_refused_unread_by_its_declared_size(server):
    """Refused from its Content-Length, before a byte of it is read: the 413 comes while all of it
    is still to be sent, and the connection closes (the body cannot be skipped for another request)."""
    with RawHttp(server.http_port) as connection:
        connection.send(post(b"", {"Content-Length": str(4 * TEN_MILLION)}))
        refused(connection.response(), 413, "--max-message-bytes")
        assert connection.closed(within=10)
    good_infer(server.http_port)


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    """No length to go by: refused while it arrives, after the limit and well before all of it."""
    element = b"0.5,"
    with RawHttp(server.http_port) as connection:
        start = b'{"inputs":[{"data":['
        connection.send(post(b"", {"Transfer-Encoding": "chunked"}) + b"%x\r\n%s\r\n" % (len(start), start))
        sent = 0
        chunk = b"%x\r\n%s\r\n" % (1 << 16, element * (1 << 14))
        while sent < TEN_MILLION * len(element) and connection.send(chunk):
            sent += 1 << 16
            if connection.closed(within=0.001) or connection.buffer:  # answered (or closed): stop
                break
        refused(connection.response(), 413, "at least", "--max-message-bytes")
        assert sent < TEN_MILLION * len(element) // 4
    good_infer(server.http_port)


def test_a_content_length_longer_than_the_body_is_refused_when_the_rest_does_not_come(server):
    refused(
        exchange(server.http_port, post(infer_body(), {"Content-Length": "500"})), 408, "--receive-seconds"
    )


def test_a_repeated_header_length_is_the_last_one_either_way(server):
    """The edge checks the last Inference-Header-Content-Length; the adapter read the first (a 500
    where the first was not a number): both read the last."""
    body, length = binary_body(binary_input(40), TEN)
    for lengths, status in (
        (["abc", length["Inference-Header-Content-Length"]], 200),
        ([length["Inference-Header-Content-Length"], "abc"], 400),
    ):
        answer = exchange(
            server.http_port, post(body, [("Inference-Header-Content-Length", n) for n in lengths])
        )
        assert answer is not None and answer.status == status, answer


def test_a_body_that_comes_after_its_answer_is_dropped_within_bounds(server):
    """A request answered without its body being read (no such route, health): the rest of its body
    is dropped as it comes. All of it at once, the connection serves the next request, as a client
    such as requests expects; trickling in, it is closed (--receive-seconds), not kept open for as
    long as bytes come."""
    for target in ("/nowhere", "/v2/health/live"):
        with RawHttp(server.http_port) as connection:
            connection.send(request("GET", target, {"Content-Length": "1000"}))
            answer = connection.response()
            assert answer is not None and answer.status in (200, 404)
            connection.send(b"x" * 1000 + request("GET", "/v2/health/ready"))
            answer = connection.response()
            assert answer is not None and answer.status == 200
            assert connection.closed(within=30)  # once idle for --http-idle-seconds
        with RawHttp(server.http_port) as connection:
            connection.send(request("GET", target, {"Content-Length": "1000"}))
            answer = connection.response()
            assert answer is not None and answer.status in (200, 404)
            for _ in range(100):  # 20 s of a byte every 0.2 s, unless closed before
                if not connection.send(b"x") or connection.closed(within=0.2):
                    break
            else:
                raise AssertionError(f"{target}: a body trickling after its answer kept the connection open")
