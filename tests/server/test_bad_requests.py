"""Each bad request gets its gRPC status and a message naming the problem; the server keeps serving."""

import logging
import time

import grpc
import numpy as np
import pytest

from lstmserve.client import InvalidArgumentError, LstmServeClientError, NotFoundError, StateMismatchError
from lstmserve.client.messages import infer_request
from lstmserve.codec import encode_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..conftest import CHARS, DIGITS

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
X = np.ones((1, 3, 5), np.float32)  # a good chars chunk


def good(**fields) -> pb.InferRequest:
    request = infer_request(CHARS, X, version=2)
    for name, value in fields.items():
        if isinstance(value, pb.Tensor | pb.State):
            getattr(request, name).CopyFrom(value)
        elif isinstance(value, list):
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    return request


def raw(array, dtype=pb.FLOAT32, shape=None, cut=0) -> pb.Tensor:
    data = np.ascontiguousarray(array).tobytes()
    return pb.Tensor(dtype=dtype, shape=array.shape if shape is None else shape, data=data[: len(data) - cut])


@pytest.fixture(scope="module")
def states(server):
    """Real states: chars v2's (the one asked for), chars v1's and digits'."""
    from lstmserve.client import Client

    with Client(server.address) as client:
        return {
            "v2": client.infer(CHARS, X, version=2).state,
            "v1": client.infer(CHARS, X, version=1).state,
            "digits": client.infer(DIGITS, np.ones((1, 2, 8), np.float32)).state,
        }


def state_with(states, edit) -> pb.State:
    message = states["v2"].to_proto()
    edit(message)
    return message


def nan_input():
    x = X.copy()
    x[0, 1, 2] = np.nan
    return x


def inf_input():
    x = X.copy()
    x[0, 2, 4] = np.inf
    return x


CASES = {
    "wrong feature size": (
        lambda s: good(input=encode_tensor(np.ones((1, 3, 4), np.float32))),
        INVALID,
        "input has 4 features per step; chars v2 takes 5",
    ),
    "wrong rank": (
        lambda s: good(input=encode_tensor(np.ones((3, 5), np.float32))),
        INVALID,
        "input must have rank 3, (batch, time, 5); got shape [3, 5]",
    ),
    "bytes do not fit the shape": (
        lambda s: good(input=raw(X, cut=4)),
        INVALID,
        "input: 56 bytes do not fit shape [1, 3, 5] of float32 (60 bytes)",
    ),
    "negative dimension": (
        lambda s: good(input=raw(X, shape=[1, -3, 5])),
        INVALID,
        "has a negative dimension",
    ),
    "wrong dtype": (
        lambda s: good(input=encode_tensor(np.ones((1, 3, 5), np.int32))),
        INVALID,
        "input must be float32, got int32",
    ),
    "no dtype": (
        lambda s: good(input=raw(X, dtype=pb.DATA_TYPE_UNSPECIFIED)),
        INVALID,
        "input: unsupported dtype DATA_TYPE_UNSPECIFIED",
    ),
    "NaN": (
        lambda s: good(input=encode_tensor(nan_input())),
        INVALID,
        "input holds NaN or Inf values (first at [0, 1, 2])",
    ),
    "Inf": (
        lambda s: good(input=encode_tensor(inf_input())),
        INVALID,
        "input holds NaN or Inf values (first at [0, 2, 4])",
    ),
    "empty batch": (
        lambda s: good(input=encode_tensor(np.ones((0, 3, 5), np.float32))),
        INVALID,
        "input has an empty batch",
    ),
    "missing input": (lambda s: pb.InferRequest(model=CHARS), INVALID, "input is missing"),
    "length past the chunk": (
        lambda s: good(sequence_lengths=encode_tensor(np.array([4], np.int32))),
        INVALID,
        "sequence_lengths must be in [0, 3] (the chunk's time); row 0 has 4",
    ),
    "negative length": (
        lambda s: good(sequence_lengths=encode_tensor(np.array([-1], np.int32))),
        INVALID,
        "row 0 has -1",
    ),
    "lengths of the wrong count": (
        lambda s: good(sequence_lengths=encode_tensor(np.array([3, 3], np.int32))),
        INVALID,
        "sequence_lengths must have one value per row, shape [1]; got [2]",
    ),
    "float lengths": (
        lambda s: good(sequence_lengths=encode_tensor(np.array([3.0], np.float32))),
        INVALID,
        "sequence_lengths must be int32 (or int64), got float32",
    ),
    "too few state layers": (
        lambda s: good(state=state_with(s, lambda m: m.layers.pop())),
        INVALID,
        "state has 1 layers; chars has 2",
    ),
    "wrong state shape": (
        lambda s: good(
            state=state_with(
                s, lambda m: m.layers[0].c.CopyFrom(encode_tensor(np.zeros((1, 11), np.float32)))
            )
        ),
        INVALID,
        "state.layers[0].c must have shape [1, 12]; got [1, 11]",
    ),
    "state for another batch": (
        lambda s: good(input=encode_tensor(np.ones((2, 3, 5), np.float32)), state=s["v2"].to_proto()),
        INVALID,
        "state.layers[0].c must have shape [2, 12]; got [1, 12]",
    ),
    "state without h": (
        lambda s: good(state=state_with(s, lambda m: m.layers[1].ClearField("h"))),
        INVALID,
        "state.layers[1] needs both c and h",
    ),
    "NaN in the state": (
        lambda s: good(
            state=state_with(
                s, lambda m: m.layers[1].h.CopyFrom(encode_tensor(np.full((1, 7), np.nan, np.float32)))
            )
        ),
        INVALID,
        "state.layers[1].h holds NaN or Inf",
    ),
    "state with no fingerprint": (
        lambda s: good(state=state_with(s, lambda m: m.ClearField("fingerprint"))),
        INVALID,
        "state.fingerprint is empty",
    ),
    "state from another version": (
        lambda s: good(state=s["v1"].to_proto()),
        PRECONDITION,
        "state was made by chars v1 (fingerprint",
    ),
    "state from another model": (
        lambda s: good(state=s["digits"].to_proto()),
        PRECONDITION,
        "state was made by digits v1",
    ),
    "state from no served model": (
        lambda s: good(state=state_with(s, lambda m: setattr(m, "fingerprint", "0" * 16))),
        PRECONDITION,
        "state was made by a model not served here",
    ),
    "unknown dtype number": (
        lambda s: good(input=raw(X, dtype=77)),
        INVALID,
        "input: unsupported dtype 77; use FLOAT32, INT32 or INT64",
    ),
    "a zero beside a huge dimension": (
        lambda s: good(input=pb.Tensor(dtype=pb.FLOAT32, shape=[0, 2**62, 5])),
        INVALID,
        "input: shape [0, 4611686018427387904, 5] is too large for any tensor",
    ),
    "rank over 64": (
        lambda s: good(input=pb.Tensor(dtype=pb.FLOAT32, shape=[1] * 70, data=b"\0" * 4)),
        INVALID,
        "input: rank 70; no tensor here has more than 8 dimensions",
    ),
    "a 20-byte request for 2**27 rows": (
        lambda s: good(input=pb.Tensor(dtype=pb.FLOAT32, shape=[2**27, 0, 5])),
        INVALID,
        "input has 134217728 rows; a request may carry at most 1024 (--max-request-rows): split the batch",
    ),
    "too many steps": (
        lambda s: good(input=encode_tensor(np.ones((1, 20000, 5), np.float32))),
        INVALID,
        "input has 20000 steps; a request may carry at most 16384 (--max-request-steps): send the "
        "sequence in shorter chunks",
    ),
    "too many rows x steps": (
        lambda s: good(input=encode_tensor(np.ones((4, 10000, 5), np.float32))),
        INVALID,
        "4 x 10000 = 40000 row-steps; a request may carry at most 32768 (--max-request-row-steps): "
        "send at most 8192 steps per chunk of 4 rows",
    ),
    "an answer over the message limit": (
        lambda s: good(input=encode_tensor(np.ones((2, 16000, 5), np.float32))),
        INVALID,
        "over the server's message limit of 1048576 (--max-message-bytes): send at most 11891 steps per "
        "chunk of 2 rows, or ask only for the logits and the state",
    ),
    "an unknown output": (
        lambda s: good(outputs=["logits", "hidden"]),
        INVALID,
        "unknown output 'hidden': chars v2 offers output, state, logits",
    ),
    "an output asked twice": (
        lambda s: good(outputs=["state", "state"]),
        INVALID,
        "'state' is asked for twice",
    ),
    "unknown model": (
        lambda s: good(model="nope"),
        NOT_FOUND,
        "unknown model 'nope' (served: chars, digits)",
    ),
    "a model name of 900 kB": (
        lambda s: good(model="x" * 900_000),
        NOT_FOUND,
        "unknown model 'xxxxx",
    ),
    "a fingerprint that would forge a log line": (
        lambda s: good(state=state_with(s, lambda m: setattr(m, "fingerprint", "f00d\nERROR forged"))),
        PRECONDITION,
        "(fingerprint 'f00d\\nERROR forged')",
    ),
    "unknown version": (
        lambda s: good(version=7),
        NOT_FOUND,
        "model 'chars' has no version 7 (served: [1, 2])",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_its_status_and_a_clear_message(client, states, case):
    build, code, message = CASES[case]
    with pytest.raises(LstmServeClientError) as caught:
        client.send(build(states))
    assert caught.value.code == code
    assert message in caught.value.details
    assert len(caught.value.details) < 400 and "\n" not in caught.value.details  # short, escaped
    # Nothing is lost: the same server answers a good request straight after.
    assert client.infer(CHARS, X).output.shape == (1, 3, 7)


def test_exceptions_follow_the_documented_hierarchy(client, states):
    with pytest.raises(InvalidArgumentError):
        client.infer(CHARS, np.ones((1, 3, 4)))
    with pytest.raises(NotFoundError):
        client.model("nope")
    with pytest.raises(StateMismatchError):
        client.infer(CHARS, X, state=states["v1"], version=2)


def test_a_message_over_the_size_limit_is_refused(client):
    big = np.ones((1, 60_000, 5), np.float32)  # 1.2 MB > the fixture's 1 MiB limit
    with pytest.raises(LstmServeClientError) as caught:
        client.infer(CHARS, big)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in caught.value.details
    assert client.infer(CHARS, X).output.shape == (1, 3, 7)


def test_stream_refuses_a_change_of_model_and_a_batch_without_state(client):
    requests = [infer_request(CHARS, X, version=1), infer_request(DIGITS, np.ones((1, 1, 8)))]
    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.StreamInfer(iter(requests)))
    assert caught.value.code() == INVALID
    assert "this stream serves chars v1; open a new stream for 'digits'" in caught.value.details()
    requests = [infer_request(CHARS, X), infer_request(CHARS, np.ones((2, 3, 5)))]
    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.StreamInfer(iter(requests)))
    assert (
        "holds state for a batch of 1; a chunk of batch 2 must bring its own state" in caught.value.details()
    )


def test_a_client_sending_garbage_in_a_loop_does_not_flood_the_log(client, caplog):
    """Each refusal is logged at INFO, but at most 10 a second; the rest are counted in one line."""

    def refused_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "lstmserve.server"]

    time.sleep(1.1)
    with pytest.raises(InvalidArgumentError):  # reports what earlier tests left uncounted, unwatched
        client.infer(CHARS, np.ones((1, 3, 4)))
    with caplog.at_level(logging.INFO, logger="lstmserve.server"):
        started = time.monotonic()
        for _ in range(200):
            with pytest.raises(InvalidArgumentError):
                client.infer(CHARS, np.ones((1, 3, 4)))
        seconds = time.monotonic() - started
        time.sleep(1.1)
        with pytest.raises(InvalidArgumentError):
            client.infer(CHARS, np.ones((1, 3, 4)))  # the next refusal reports what was skipped
    lines = refused_lines()
    named = [line for line in lines if "input has 4 features per step" in line]
    skipped = [int(line.split()[2]) for line in lines if "refused calls not logged" in line]
    assert len(named) <= 10 * (int(seconds) + 3), lines[:5]  # 10 a second the loop touched, and the last
    assert len(named) + sum(skipped) == 201
