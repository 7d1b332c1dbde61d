"""A zero-step chunk on a StreamInfer call that asks only for the state (a client's checkpoint) is
answered with the state the stream holds, without an onnxruntime run; every other zero-step chunk
keeps what a run of zero steps gives (each row's initial state, bit for bit)."""

import os

import grpc
import numpy as np
import pytest

from lstmserve.client import Client, State
from lstmserve.client.messages import InferResult, infer_request
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer, free_port
from .test_metrics import grpc_calls, scrape, value

X = np.random.default_rng(21).standard_normal((2, 6, 5)).astype(np.float32)  # (batch, time, input_size)


def zero_steps(rows: int, features: int = 5) -> np.ndarray:
    return np.empty((rows, 0, features), np.float32)  # (batch, time = 0, input_size)


def stream_answers(client: Client, *requests) -> list[InferResult]:
    return [InferResult.from_proto(answer) for answer in client.stub.StreamInfer(iter(requests))]


def stream_error(client: Client, *requests) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.StreamInfer(iter(requests)))
    return caught.value


def test_a_checkpoint_returns_the_held_state_without_a_run(repository):
    port = free_port()
    server = InProcessServer(Settings(repository=str(repository), metrics_port=port)).start()
    try:
        with Client(server.address) as client:
            whole = client.infer(CHARS, X, version=1)
            runs = value(scrape(port), "lstmserve_compute_seconds_count", model="chars:1")
            first, checkpoint, after = stream_answers(
                client,
                infer_request(CHARS, X, version=1, outputs=["output"]),
                infer_request(CHARS, zero_steps(2), version=1, outputs=["state"]),
                infer_request(CHARS, X[:, :0], version=1, outputs=["state"]),  # twice: still the same
            )
            samples = scrape(port)
    finally:
        server.stop()
    assert first.state is None and checkpoint.output is None and checkpoint.logits is None
    assert checkpoint.state == whole.state == after.state
    assert value(samples, "lstmserve_compute_seconds_count", model="chars:1") == runs + 1  # the chunk only
    assert grpc_calls(samples, "chars:1", "StreamInfer", "OK") == 3


def test_a_checkpoint_of_the_wrong_batch_or_features_is_refused(client):
    chunk = infer_request(CHARS, X, version=1, outputs=["output"])
    rows = stream_error(client, chunk, infer_request(CHARS, zero_steps(3), outputs=["state"]))
    assert rows.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds state for a batch of 2; a chunk of batch 3 must bring its own state" in rows.details()
    features = stream_error(client, chunk, infer_request(CHARS, zero_steps(2, 4), outputs=["state"]))
    assert features.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input has 4 features per step; chars v1 takes 5" in features.details()
    lengths = stream_error(
        client, chunk, infer_request(CHARS, zero_steps(2), lengths=[0, 1], outputs=["state"])
    )
    assert lengths.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence_lengths must be in [0, 0]" in lengths.details()


def test_zero_steps_without_a_held_state_answer_the_initial_state_as_before(client):
    fresh = stream_answers(client, infer_request(CHARS, zero_steps(2), version=1, outputs=["state"]))[0]
    assert all(not c.any() and not h.any() for c, h in fresh.state.layers)  # zero state
    sent = client.infer(CHARS, X, version=1).state
    brought = stream_answers(client, infer_request(CHARS, zero_steps(2), sent, version=1, outputs=["state"]))
    assert brought[0].state == sent
    # Unary Infer and a zero-step chunk asking for more than the state still run the model.
    unary = client.infer(DIGITS, zero_steps(2, 8), version=1)
    assert unary.output.shape[:2] == (2, 0) and unary.logits.shape[0] == 2
    assert all(not c.any() for c, _ in unary.state.layers)
    (more,) = stream_answers(client, infer_request(CHARS, zero_steps(2), sent, version=1))
    assert more.output.shape == (2, 0, 7) and more.state == sent


def test_a_checkpoint_on_a_sealing_server_returns_a_sealed_state_that_resumes(repository, tmp_path):
    key = tmp_path / "state.key"
    key.write_text(os.urandom(32).hex() + "\n")
    server = InProcessServer(Settings(repository=str(repository), state_key_file=str(key))).start()
    try:
        with Client(server.address) as client:
            whole = client.infer(CHARS, X, version=1)
            _, checkpoint = stream_answers(
                client,
                infer_request(CHARS, X[:, :4], version=1, outputs=["output"]),
                infer_request(CHARS, zero_steps(2), version=1, outputs=["state"]),
            )
            rest = client.infer(CHARS, X[:, 4:], State.from_bytes(checkpoint.state.to_bytes()), version=1)
    finally:
        server.stop()
    assert checkpoint.state.sealed
    np.testing.assert_array_equal(rest.output, whole.output[:, 4:])
