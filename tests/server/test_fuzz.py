"""Property-based tests (hypothesis): hostile requests over both protocols, and raw bytes to every
method, against the real server. Whatever arrives, the answer is a status the server chose (never
UNKNOWN or INTERNAL, and no hang) with a short, escaped message, and the server keeps serving.

The requests come from tests/server/wire_strategies.py. Runs are derandomized: CI sees the same
examples every time (`--hypothesis-show-statistics` shows which statuses they got).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from lstmserve.client import Client
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..conftest import CHARS
from .wire_strategies import (
    FOUND,
    INFER,
    INT64,
    METHODS,
    MODEL_INFER,
    MODELS,
    STREAM,
    TEXT,
    VERSION_TEXT,
    Shown,
    X,
    infer_requests,
    made_by,
    model_infer_requests,
    mostly,
    raw_calls,
    shown,
    streams,
)

TIMEOUT = 10  # seconds per call: a hang fails its example instead of wedging the run
# UNKNOWN and INTERNAL are exceptions nobody meant; DEADLINE_EXCEEDED (our TIMEOUT) is a hang.
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
MAX_DETAILS = 1000  # and printable: no newline or other control character a client sent
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# --- the tests ------------------------------------------------------------------------------------


class Watch(logging.Handler):
    """Sends to the server and checks what each example leaves: a status the server chose, briefly
    told; nothing the server logged at ERROR; a server that still answers a good request."""

    def __init__(self, channel: grpc.Channel, client: Client, fingerprints: dict[str, str]):
        super().__init__(logging.ERROR)
        self.channel, self.client, self.fingerprints = channel, client, fingerprints
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # on the server's thread
        self.errors.append(record.getMessage())

    def send(self, path: str, *messages: Message | bytes) -> None:
        """One call: unary, or a stream of the messages; then the checks."""
        self.errors.clear()  # what an example that failed before left
        chunks = [self.serialized(message) for message in messages]
        if METHODS[path].client_streaming:
            self.deliberate(lambda: list(self.channel.stream_stream(path)(iter(chunks), timeout=TIMEOUT)))
        else:
            self.deliberate(lambda: self.channel.unary_unary(path)(chunks[0], timeout=TIMEOUT))
        self.still_serving()

    def serialized(self, message: Message | bytes) -> bytes:
        """The message's bytes, with a placeholder fingerprint swapped for the real one."""
        if isinstance(message, bytes):
            return message
        message = type(message).FromString(message.SerializeToString())
        if isinstance(message, pb.InferRequest) and message.HasField("state"):
            message.state.fingerprint = self.fingerprints.get(
                message.state.fingerprint, message.state.fingerprint
            )
        if isinstance(message, kserve.ModelInferRequest) and "state_fingerprint" in message.parameters:
            parameter = message.parameters["state_fingerprint"]
            if parameter.WhichOneof("parameter_choice") == "string_param":
                parameter.string_param = self.fingerprints.get(parameter.string_param, parameter.string_param)
        return message.SerializeToString()

    def deliberate(self, call: Callable[[], object]) -> None:
        try:
            call()
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""
            assert code not in NEVER, f"{code.name}: {details}"
            assert len(details) <= MAX_DETAILS and details.isprintable(), f"{code.name}: {details[:2000]!r}"
            event(f"{code.name}: {details[:24]}")  # --hypothesis-show-statistics: what the examples reach
        else:
            event("OK")

    def still_serving(self) -> None:
        errors, self.errors = self.errors, []
        assert not errors, f"the server logged {errors}"
        assert self.client.infer(CHARS, X).output.shape == (1, 3, 7)


@pytest.fixture(scope="module")
def watch(server):
    # The channel sends up to 8 MiB, so that the server's own 1 MiB limit is what refuses.
    options = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]
    loggers = [logging.getLogger(name) for name in ("lstmserve", "grpc")]
    with grpc.insecure_channel(server.address, options) as channel, Client(server.address) as client:
        fingerprints = {}  # each placeholder -> the fingerprint of a real response's state
        for model, (size, _, newest) in MODELS.items():
            for version in range(1, newest + 1):
                state = client.infer(model, np.ones((1, 1, size), np.float32), version=version).state
                fingerprints[made_by(model, version)] = state.fingerprint
        watching = Watch(channel, client, fingerprints)
        for logger in loggers:
            logger.addHandler(watching)
        yield watching
        for logger in loggers:
            logger.removeHandler(watching)


@settings(FUZZ, max_examples=250)
@given(message=shown(infer_requests()))
def test_infer_answers_any_request_deliberately(watch, message):
    watch.send(INFER, message.value)


@settings(FUZZ, max_examples=100)
@given(messages=shown(streams()))
def test_stream_infer_answers_any_stream_deliberately(watch, messages):
    watch.send(STREAM, *messages.value)


@settings(FUZZ, max_examples=250)
@given(message=shown(model_infer_requests()))
@example(message=Shown(FOUND["typed contents beside raw ones, under a name with a newline"]))
@example(message=Shown(FOUND["an id of 150000 euro signs beside a chunk that fills the answer"]))
def test_model_infer_answers_any_request_deliberately(watch, message):
    watch.send(MODEL_INFER, message.value)


# No shrinking: each step replays up to 8 calls (80 s to shrink one failure); Shown keeps the report
# short, and the single-call tests shrink what these find.
@settings(FUZZ, max_examples=40, phases=[Phase.explicit, Phase.generate])
@given(calls=shown(st.lists(st.one_of(infer_requests(), model_infer_requests()), min_size=2, max_size=8)))
def test_concurrent_requests_batched_together_are_each_answered_deliberately(watch, calls):
    """Calls in flight at once share onnxruntime runs (the batcher merges them, both protocols alike)."""
    watch.errors.clear()
    futures = [
        watch.channel.unary_unary(INFER if isinstance(message, pb.InferRequest) else MODEL_INFER).future(
            watch.serialized(message), timeout=TIMEOUT
        )
        for message in calls.value
    ]
    for future in futures:
        watch.deliberate(future.result)
    watch.still_serving()


@FUZZ
@given(
    rpc=st.sampled_from(["ModelReady", "ModelMetadata", "GetModel"]),
    name=mostly(st.sampled_from(sorted(MODELS)), TEXT, odds=2),
    version=VERSION_TEXT,
    number=mostly(st.integers(-1, 3), INT64, odds=2),
)
def test_model_queries_answer_deliberately(watch, rpc, name, version, number):
    if rpc == "GetModel":
        watch.send("/lstmserve.v1.LSTMService/GetModel", pb.GetModelRequest(model=name, version=number))
    else:
        message = getattr(kserve, f"{rpc}Request")(name=name, version=version)
        watch.send(f"/inference.GRPCInferenceService/{rpc}", message)


@settings(FUZZ, max_examples=200)
@given(call=shown(raw_calls()))
def test_any_bytes_to_any_method_get_a_deliberate_status(watch, call):
    path, chunks = call.value
    watch.send(path, *chunks)
