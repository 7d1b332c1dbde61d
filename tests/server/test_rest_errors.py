"""Bad REST requests on the session's server: each gets the HTTP status that its gRPC status maps to
(400, 404, 409, 413, 415), a short {"error": "..."}, the limit it hit by name in the lstmserve-limit
header, and the server keeps serving."""

from __future__ import annotations

import gzip
from http.client import HTTPConnection

import numpy as np
import orjson
import pytest
import requests

from lstmserve.limits import DEFAULT_LIMITS as LIMITS  # the session server's, but for message bytes

from ..conftest import CHARS, DIGITS
from .rest_calls import HEADER_LENGTH, infer, infer_body, model_path, session

X = np.random.default_rng(3).standard_normal((2, 4, 5)).astype(np.float32)  # a chars chunk
LIMIT = "lstmserve-limit"
MESSAGE_BYTES = 1 << 20  # the session server's --max-message-bytes (tests/conftest.py)
ROWS, STEPS = LIMITS.max_request_rows, LIMITS.max_request_steps
ROW_STEPS = LIMITS.max_request_row_steps


@pytest.fixture(scope="module")
def http(server):
    with session() as made:
        yield made, server.http_url


@pytest.fixture(scope="module")
def v1_state(http):
    """chars v1's state and fingerprint: another model's, for chars v2."""
    answer = infer(*http, CHARS, {"input": X}, version="1")
    return answer.state(), answer.fingerprint


def tensor(name="input", datatype="FP32", shape=(2, 4, 5), data=None) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data or X.ravel().tolist()}


def json_body(*tensors, **fields) -> tuple[bytes, dict]:
    return orjson.dumps({"inputs": list(tensors or [tensor()]), **fields}), {}


def binary_body(header: dict, blobs: bytes, length: int | str | None = None) -> tuple[bytes, dict]:
    json = orjson.dumps(header)
    return json + blobs, {HEADER_LENGTH: str(len(json) if length is None else length)}


def sized(shape) -> tuple[bytes, dict]:
    """input of `shape`, zeros in binary (a row, step or answer limit's request: big, cheaply)."""
    x = np.zeros(shape, np.float32)
    return infer_body({"input": x}, binary=True)


STATE_CASES = {  # built from chars v1's state
    "state without its fingerprint": (
        lambda s: infer_body({"input": X, **s[0]}),
        400,
        "sent without the state_fingerprint parameter",
    ),
    "half a state": (
        lambda s: infer_body({"input": X, "initial_c_0": s[0]["initial_c_0"]}, fingerprint=s[1]),
        400,
        "state inputs come together: got initial_c_0 but not initial_h_0, initial_c_1, initial_h_1",
    ),
    "state from another version": (
        lambda s: infer_body({"input": X, **s[0]}, fingerprint=s[1]),
        409,
        "state was made by chars v1 (fingerprint",
    ),
    "state of a made-up model": (
        lambda s: infer_body({"input": X, **s[0]}, fingerprint="0123456789abcdef"),
        409,
        "a model not served here",
    ),
}
CASES = {
    "not JSON": (lambda: (b'{"inputs": [', {}), 400, "the request is not JSON"),
    "a timeout not in microseconds": (
        lambda: json_body(parameters={"timeout": 0.5}),
        400,
        "parameter timeout must be a whole number of microseconds",
    ),
    "not an object": (lambda: (b"[1, 2]", {}), 400, 'the request must be a JSON object with "inputs"'),
    "inputs not a list": (lambda: (b'{"inputs": {}}', {}), 400, '"inputs" must be a list of tensors'),
    "no data": (
        lambda: json_body({"name": "input", "datatype": "FP32", "shape": [2, 4, 5]}),
        400,
        'input: give its "data", or binary_data_size and the bytes',
    ),
    "wrong shape for the data": (
        lambda: json_body(tensor(shape=(2, 4, 6))),
        400,
        "input: data must be a list of 48 numbers (shape [2, 4, 6])",
    ),
    "strings as numbers": (
        lambda: json_body(tensor(data=["1.0"] * 40)),
        400,
        "input: data must be 40 FP32 numbers",
    ),
    "unknown datatype": (
        lambda: json_body(tensor(datatype="FLOAT32")),
        400,
        "input: unknown datatype 'FLOAT32'; the protocol's are BOOL, UINT8",
    ),
    "a datatype the model does not take": (
        lambda: infer_body({"input": X.astype(np.int64)}),
        400,
        "input has datatype INT64; chars v2 takes FP32",
    ),
    "unknown input": (
        lambda: json_body(tensor(), tensor(name="inputs")),
        400,
        "unknown input 'inputs': chars v2 takes input, sequence_lengths, initial_c_0",
    ),
    "unknown output": (
        lambda: json_body(outputs=[{"name": "probabilities"}]),
        400,
        "unknown output 'probabilities'",
    ),
    "wrong feature size": (
        lambda: infer_body({"input": np.ones((1, 3, 4), np.float32)}),
        400,
        "input has 4 features per step; chars v2 takes 5",
    ),
    "a number float32 cannot hold": (
        lambda: json_body(tensor(data=[1e39] * 40)),
        400,
        "input holds NaN or Inf values (first at [0, 0, 0])",
    ),
    "Triton's sequence parameters": (
        lambda: json_body(parameters={"sequence_id": 7}),
        400,
        "parameter 'sequence_id': lstmserve keeps no state between calls",
    ),
    "binary data shorter than its size": (
        lambda: binary_body(tensor_binary(X.nbytes + 4), X.tobytes()),
        400,
        "input: binary_data_size '164' does not fit the 160 bytes of binary data left",
    ),
    "bytes after the binary data": (
        lambda: binary_body(tensor_binary(X.nbytes), X.tobytes() + b"\0" * 8),
        400,
        "168 bytes follow the JSON header but the inputs' binary_data_size add up to 160",
    ),
    "a header length past the body": (
        lambda: binary_body(tensor_binary(X.nbytes), X.tobytes(), 10**6),
        400,
        "Inference-Header-Content-Length is 1000000 but the body has",
    ),
    "a header length that is no number": (
        lambda: binary_body(tensor_binary(X.nbytes), X.tobytes(), "12x"),
        400,
        "Inference-Header-Content-Length must be a byte count",
    ),
}
LIMIT_CASES = {  # status, words, the limit's name
    "rows over the limit": (
        lambda: sized((ROWS + 1, 1, 5)),
        f"a request may carry at most {ROWS}",
        "max_request_rows",
    ),
    "steps over the limit": (lambda: sized((1, STEPS + 1, 5)), "(--max-request-steps)", "max_request_steps"),
    "rows x steps over the limit": (
        lambda: sized((4, ROW_STEPS // 4 + 1, 5)),  # within the steps, past rows x steps
        "--max-request-row-steps",
        "max_request_row_steps",
    ),
    "an answer over the message limit": (
        # 5 floats a step in, 11 out (output and logits): the request fits, its answer does not
        lambda: sized((2, MESSAGE_BYTES // (2 * 8 * 4), 5)),
        f"message limit of {MESSAGE_BYTES} (--max-message-bytes): send at most",  # the answer's advice
        "max_message_bytes",
    ),
}


def tensor_binary(size: int) -> dict:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [2, 4, 5],
                "parameters": {"binary_data_size": size},
            }
        ]
    }


def post(http, body: bytes, headers: dict, model: str = CHARS, version: str = "2") -> requests.Response:
    session, url = http
    return session.post(f"{url}{model_path(model, version)}/infer", data=body, headers=headers, timeout=20)


def refused(answer: requests.Response, status: int, words: str) -> None:
    """The answer a refusal gets: the status, one short line of JSON that says why."""
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert list(error) == ["error"] and words in error["error"], error
    assert len(error["error"]) < 400 and "\n" not in error["error"]


def still_serving(http) -> None:
    assert infer(*http, CHARS, {"input": X}).arrays["output"].shape == (2, 4, 7)


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_request_is_400_with_the_reason(http, case):
    build, status, words = CASES[case]
    answer = post(http, *build())
    refused(answer, status, words)
    assert LIMIT not in answer.headers  # no setting refused it
    still_serving(http)


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_a_bad_state_is_refused_as_over_grpc(http, v1_state, case):
    """409 is FAILED_PRECONDITION: a state that is whole but belongs to another model."""
    build, status, words = STATE_CASES[case]
    refused(post(http, *build(v1_state)), status, words)
    still_serving(http)


@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_a_request_over_a_size_limit_is_413_naming_the_limit(http, case):
    build, words, limit = LIMIT_CASES[case]
    answer = post(http, *build())
    refused(answer, 413, words)
    assert answer.headers[LIMIT] == limit
    still_serving(http)


def test_a_body_declared_over_the_message_limit_is_413_before_it_is_sent(server, http):
    """Refused from its Content-Length alone: the body never has to arrive, and the connection,
    with its unread body, is closed."""
    connection = http_connection(server)
    connection.putrequest("POST", f"{model_path(CHARS)}/infer")
    connection.putheader("Content-Length", str(MESSAGE_BYTES + 1))
    connection.endheaders()
    answer = connection.getresponse()
    error = orjson.loads(answer.read())
    assert answer.status == 413 and answer.getheader(LIMIT) == "max_message_bytes"
    assert f"the body has {MESSAGE_BYTES + 1} bytes" in error["error"]
    assert answer.getheader("connection") == "close"
    connection.close()
    still_serving(http)


def test_a_chunked_body_is_413_once_it_passes_the_message_limit(server, http):
    connection = http_connection(server)
    piece = b" " * (64 << 10)  # JSON whitespace: a body that is fine until it is too long
    pieces = iter([piece] * (MESSAGE_BYTES // len(piece) + 1))
    connection.request("POST", f"{model_path(CHARS)}/infer", body=pieces, encode_chunked=True)
    answer = connection.getresponse()
    error = orjson.loads(answer.read())
    assert answer.status == 413 and answer.getheader(LIMIT) == "max_message_bytes"
    assert "the body has at least" in error["error"] and "(--max-message-bytes)" in error["error"]
    connection.close()
    still_serving(http)


def test_a_compressed_body_is_415(http):
    body, headers = infer_body({"input": X})
    for encoding in ("gzip", "GZIP", "br"):
        answer = post(http, gzip.compress(body), {**headers, "Content-Encoding": encoding})
        refused(answer, 415, f"Content-Encoding '{encoding.lower()}' is not taken; send identity")
    answer = post(http, body, {**headers, "Content-Encoding": "identity"})
    assert answer.status_code == 200


def test_every_model_answers_its_own_tensors(http):
    """The refusals above are not a broken route: digits, with its own feature size, is fine."""
    answer = infer(*http, DIGITS, {"input": np.zeros((1, 2, 8), np.float32)})
    assert answer.arrays["logits"].shape == (1, 10)


def http_connection(server) -> HTTPConnection:
    return HTTPConnection("127.0.0.1", server.http_port, timeout=20)


def test_a_timeout_that_cannot_be_met_is_504_and_one_that_can_is_answered(http):
    """Triton's `timeout` parameter (microseconds; tritonclient.http's infer(timeout=)) is the call's
    deadline, as gRPC's is: the batcher refuses a call that reaches it with no time left (504), and
    answers one with time to spare."""
    late = post(http, *json_body(parameters={"timeout": 1}))  # 1 us: past before it is read
    refused(late, 504, "deadline")
    in_time = post(http, *json_body(parameters={"timeout": 30_000_000}))
    assert in_time.status_code == 200, in_time.text[:300]
