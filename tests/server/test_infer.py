"""Infer and StreamInfer over real gRPC: exactness, chunking, state handling, concurrency."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from lstmserve import contract
from lstmserve.client import InvalidArgumentError

from ..conftest import CHARS, DIGITS


def chunkings(time: int, rng: np.random.Generator, count: int = 4) -> list[list[int]]:
    """Random ways to cut `time` steps into chunks, plus one step at a time."""
    cuts = [sorted(set(rng.integers(1, time, size=rng.integers(1, 5)).tolist())) for _ in range(count)]
    return [[0, *c, time] for c in cuts] + [list(range(time + 1))]


def local_run(repository, name, version, x, state=None, lengths=None):
    """The same model file run by onnxruntime in this process: what the server must answer."""
    sess = ort.InferenceSession(str(repository / name / str(version) / "model.onnx"))
    batch, time = x.shape[:2]
    feed = {
        contract.INPUT: x.astype(np.float32),
        contract.SEQUENCE_LENGTHS: np.full(batch, time, np.int32) if lengths is None else lengths,
    }
    for index, value in enumerate(sess.get_inputs()[2:]):
        feed[value.name] = np.zeros((batch, value.shape[1]), np.float32) if state is None else state[index]
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def test_infer_answers_what_the_model_computes(client, repository):
    x = np.random.default_rng(0).standard_normal((3, 6, 5)).astype(np.float32)
    result = client.infer(CHARS, x, version=1)
    want = local_run(repository, CHARS, 1, x)
    np.testing.assert_array_equal(result.output, want["output"])
    np.testing.assert_array_equal(result.logits, want["logits"])
    assert result.model == CHARS and result.version == 1
    assert len(result.state.layers) == 2 and result.state.layers[1][0].shape == (3, 7)


def test_newest_version_answers_when_none_is_named(client):
    x = np.zeros((1, 2, 5), np.float32)
    assert client.infer(CHARS, x).version == 2
    assert client.model(CHARS).version == 2 and client.model(CHARS, 1).version == 1


@pytest.mark.parametrize("bidi", [False, True], ids=["unary", "bidi"])
def test_chunked_streaming_equals_one_call(client, bidi):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 23, 5)).astype(np.float32)
    whole = client.infer(CHARS, x, version=1)
    for bounds in chunkings(23, rng):
        with client.stream(CHARS, version=1, bidi=bidi) as stream:
            parts = [stream.feed(x[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        np.testing.assert_allclose(
            np.concatenate([p.output for p in parts], 1), whole.output, atol=1e-6, rtol=0
        )
        np.testing.assert_allclose(
            np.concatenate([p.logits for p in parts], 1), whole.logits, atol=1e-6, rtol=0
        )
        for (c, h), (c1, h1) in zip(stream.state.layers, whole.state.layers):
            np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
            np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)


def test_classifier_streamed_row_by_row_equals_one_call(client):
    x = np.random.default_rng(2).random((5, 8, 8), dtype=np.float32)
    whole = client.infer(DIGITS, x)
    stream = client.stream(DIGITS)
    for row in range(8):
        last = stream.feed(x[:, row : row + 1])
    np.testing.assert_allclose(last.logits, whole.logits, atol=1e-6, rtol=0)


def test_absent_state_is_zero_state_and_absent_lengths_full_length(client, repository):
    x = np.random.default_rng(3).standard_normal((2, 4, 5)).astype(np.float32)
    implicit = client.infer(CHARS, x, version=1)
    explicit = client.infer(
        CHARS, x, version=1, lengths=[4, 4], state=client.infer(CHARS, x[:, :0], version=1).state
    )  # a 0-step chunk: zero state
    np.testing.assert_array_equal(implicit.output, explicit.output)
    assert all(not c.any() and not h.any() for c, h in client.infer(CHARS, x[:, :0], version=1).state.layers)


def test_ragged_lengths_over_the_wire(client, repository):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    first = client.infer(CHARS, x, version=1)
    lengths = np.array([0, 2, 6, 3], np.int32)
    result = client.infer(CHARS, x, version=1, state=first.state, lengths=lengths)
    state = [a for layer in first.state.layers for a in layer]
    want = local_run(repository, CHARS, 1, x, state, lengths)
    np.testing.assert_array_equal(result.output, want["output"])
    np.testing.assert_array_equal(result.logits, want["logits"])
    assert len(result.state.layers) == 2
    for layer, ((c, h), (c0, h0)) in enumerate(zip(result.state.layers, first.state.layers)):
        np.testing.assert_array_equal(c, want[contract.final_c(layer)])
        np.testing.assert_array_equal(h, want[contract.final_h(layer)])
        # the 0-length row keeps the state it came with; the others moved on
        np.testing.assert_array_equal(c[0], c0[0])
        np.testing.assert_array_equal(h[0], h0[0])
        assert not np.array_equal(c[1:], c0[1:]) and not np.array_equal(h[1:], h0[1:])
    assert not result.output[1, 2:].any() and not result.logits[3, 3:].any()


def test_infer_is_idempotent(client):
    x = np.random.default_rng(5).standard_normal((2, 5, 5)).astype(np.float32)
    a, b = client.infer(CHARS, x), client.infer(CHARS, x)
    np.testing.assert_array_equal(a.output, b.output)
    assert a.state == b.state


def test_concurrent_streams_never_mix_state(client):
    rng = np.random.default_rng(6)
    sequences = [rng.standard_normal((1 + i % 3, 17, 5)).astype(np.float32) for i in range(16)]
    wholes = [client.infer(CHARS, x, version=1) for x in sequences]

    def run(index: int):
        x, local = sequences[index], np.random.default_rng(100 + index)
        bounds = chunkings(17, local, count=1)[0]
        with client.stream(CHARS, version=1, bidi=index % 2 == 1) as stream:
            outputs = [stream.feed(x[:, a:b]).output for a, b in zip(bounds[:-1], bounds[1:])]
        return np.concatenate(outputs, 1), stream.state

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(len(sequences))))
    for index, ((output, state), whole) in enumerate(zip(results, wholes)):
        np.testing.assert_array_equal(output, whole.output, err_msg=f"stream {index}")
        assert state.fingerprint == whole.state.fingerprint and len(state.layers) == 2
        for layer, (mine, theirs) in enumerate(zip(state.layers, whole.state.layers)):
            for part, a, b in zip("ch", mine, theirs):
                np.testing.assert_array_equal(a, b, err_msg=f"stream {index} layer {layer} {part}")


def test_a_state_can_be_saved_restored_and_forked(client):
    from lstmserve.client import State

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 12, 5)).astype(np.float32)
    whole = client.infer(CHARS, x, version=1)
    stream = client.stream(CHARS, version=1)
    stream.feed(x[:, :5])
    saved = stream.save()
    fork = stream.fork()
    stream.feed(x[:, 5:])
    resumed = client.stream(CHARS, version=1, state=State.from_bytes(saved)).feed(x[:, 5:])
    branch = fork.feed(x[:, 5:])
    for result in (resumed, branch):
        np.testing.assert_allclose(result.output, whole.output[:, 5:], atol=1e-6, rtol=0)
    assert stream.state == resumed.state == branch.state


def test_stream_infer_holds_the_state_and_a_sent_state_replaces_it(client):
    from lstmserve.client.messages import InferResult, infer_request

    x = np.random.default_rng(8).standard_normal((1, 8, 5)).astype(np.float32)
    other = client.infer(CHARS, x[:, 4:], version=1).state  # some other point of the sequence
    requests = [
        infer_request(CHARS, x[:, :3], version=1),  # zero state
        infer_request("", x[:, 3:6]),  # later messages may leave the model out: the held state is used
        infer_request(CHARS, x[:, 6:], state=other, version=1),  # a sent state replaces the held one
    ]
    held, replaced = [InferResult.from_proto(r) for r in client.stub.StreamInfer(iter(requests))][1:]
    np.testing.assert_allclose(held.output, client.infer(CHARS, x[:, :6], version=1).output[:, 3:], atol=1e-6)
    np.testing.assert_allclose(
        replaced.output, client.infer(CHARS, x[:, 6:], other, version=1).output, atol=1e-6
    )


def test_list_and_get_models(client):
    models = {(m.name, m.version): m for m in client.models()}
    assert set(models) == {(DIGITS, 1), (CHARS, 1), (CHARS, 2)}
    digits = models[DIGITS, 1]
    assert digits.input_size == 8 and digits.hidden_sizes == (16, 8) and digits.head == "classify_last"
    assert digits.labels == tuple("0123456789") and digits.num_outputs == 10 and digits.quantization == "none"
    assert models[CHARS, 1].versions == (1, 2)
    assert models[CHARS, 1].fingerprint != models[CHARS, 2].fingerprint


@pytest.mark.parametrize("bidi", [False, True], ids=["unary", "bidi"])
def test_a_stream_can_leave_out_the_per_step_output(client, bidi):
    """Long chunks whose per-step output would not fit a message stream fine without it."""
    x = np.random.default_rng(9).standard_normal((2, 32_000, 5)).astype(np.float32)
    with pytest.raises(InvalidArgumentError, match="ask only for the logits and the state"):
        client.infer(CHARS, x[:, :16_000])  # output 2 x 16000 x 7 floats: over the fixture's 1 MiB
    whole = client.infer(CHARS, x[:, :100])
    small = client.infer(CHARS, x[:, :100], outputs=["logits", "state"])
    assert small.output is None and small.state == whole.state
    np.testing.assert_array_equal(small.logits, whole.logits)
    with client.stream(CHARS, bidi=bidi, outputs=["logits"]) as stream:  # the state comes anyway
        first = stream.feed(x[:, :16_000])
        last = stream.feed(x[:, 16_000:])
    assert first.output is None and last.output is None and last.state is not None
    alone = client.infer(CHARS, x[:, 16_000:], state=first.state, outputs=["logits"])
    np.testing.assert_allclose(last.logits, alone.logits, atol=1e-6, rtol=0)
    assert alone.state is None  # not asked for
