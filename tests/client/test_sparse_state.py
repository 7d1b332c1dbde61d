"""Bidi streams with sparse state (state_every=k): the state comes back on every k-th chunk only, and
the outputs and final state are those of an unbroken k=1 stream and of one call over the sequence,
whether or not calls break in the middle of a window (the kept chunks are replayed)."""

import asyncio
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmserve.client import AsyncClient, Client
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer

X = np.random.default_rng(31).standard_normal((3, 24, 5)).astype(np.float32)  # (batch, time, input_size)
LENGTHS = [2, 1, 3, 1, 1, 4, 2, 1, 3, 2, 1, 3]  # 24 steps in 12 chunks
OUTPUTS = ["output", "logits"]  # chars v1 has a per-step head


def chunks_of(x: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *lengths])
    return [x[:, a:b] for a, b in zip(bounds, bounds[1:])]


def assert_states_close(state, expected) -> None:
    assert state.fingerprint == expected.fingerprint
    for (c, h), (c1, h1) in zip(state.layers, expected.layers, strict=True):
        np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
        np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)


def assert_like_one_call(results, final_state, whole) -> None:
    for part in ("output", "logits"):
        streamed = np.concatenate([getattr(result, part) for result in results], axis=1)
        np.testing.assert_allclose(streamed, getattr(whole, part), atol=1e-6, rtol=0)
    assert_states_close(final_state, whole.state)


@pytest.fixture(scope="module")
def idle(repository):
    """A server that ends a stream idle for 0.5 s (UNAVAILABLE): a call broken by the server."""
    running = InProcessServer(Settings(repository=str(repository), stream_idle_seconds=0.5)).start()
    yield running
    running.stop()


@pytest.mark.parametrize("outputs", [None, OUTPUTS], ids=["all", "named"])
@pytest.mark.parametrize("every", [2, 4, 5])
def test_sparse_state_equals_an_unbroken_stream_and_one_call(client, every, outputs):
    whole = client.infer(CHARS, X, version=1)
    with client.stream(CHARS, version=1, bidi=True, outputs=outputs) as dense:
        expected = [dense.feed(chunk) for chunk in chunks_of(X, LENGTHS)]
    with client.stream(CHARS, version=1, bidi=True, outputs=outputs, state_every=every) as sparse:
        results, pending = [], []
        for chunk in chunks_of(X, LENGTHS):
            results.append(sparse.feed(chunk))
            pending.append(sparse.pending)
    # With outputs=None the first chunk asks for everything (so the model's names are learnt).
    first = 1 if outputs is None else every
    with_state = [i for i, result in enumerate(results) if result.state is not None]
    assert with_state == list(range(first - 1, len(LENGTHS), every))
    assert max(pending) == every - 1 and sparse.pending == 0  # close() fetched the state
    for result, unbroken in zip(results, expected, strict=True):
        np.testing.assert_array_equal(result.output, unbroken.output)
        np.testing.assert_array_equal(result.logits, unbroken.logits)
    assert sparse.state == dense.state
    assert_like_one_call(results, sparse.state, whole)


def test_checkpoint_save_and_fork_with_pending_chunks(client):
    whole = client.infer(CHARS, X, version=1)
    stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=4)
    results = [stream.feed(chunk) for chunk in chunks_of(X, LENGTHS)[:5]]  # state after the 4th
    assert stream.pending == 1 and results[3].state is not None
    for refused in (stream.save, stream.fork):
        with pytest.raises(ValueError, match=r"1 chunk fed since the last state .* checkpoint\(\) before"):
            refused()
    checkpoint = stream.checkpoint()  # a zero-step chunk on the open call
    assert stream.pending == 0 and checkpoint is stream.state
    steps = sum(LENGTHS[:5])
    assert_states_close(checkpoint, client.infer(CHARS, X[:, :steps], version=1).state)
    assert stream.checkpoint() is checkpoint  # nothing pending: no call
    branch = stream.fork()
    saved = stream.save()
    results += [stream.feed(chunk) for chunk in chunks_of(X, LENGTHS)[5:]]  # the call goes on
    stream.close()
    assert_like_one_call(results, stream.state, whole)
    assert branch.state == checkpoint and saved == checkpoint.to_bytes()
    assert branch.state_every == 4 and branch.outputs == [*OUTPUTS, "state"]


def test_only_the_state_asked_for(client):
    whole = client.infer(CHARS, X, version=1)
    with client.stream(CHARS, version=1, bidi=True, outputs=["state"], state_every=3) as stream:
        results = [stream.feed(chunk) for chunk in chunks_of(X, LENGTHS)]
    assert all(result.output is None and result.logits is None for result in results)
    assert [result.state is not None for result in results] == [i % 3 == 2 for i in range(12)]
    assert_states_close(stream.state, whole.state)


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "2"])
def test_state_every_must_be_a_whole_number_of_chunks(client, every):
    with pytest.raises(ValueError, match="state_every must be a whole number of chunks >= 1"):
        client.stream(CHARS, bidi=True, state_every=every)


def test_sparse_state_needs_a_bidi_stream(client):
    with pytest.raises(ValueError, match="state_every > 1 needs bidi=True"):
        client.stream(CHARS, state_every=2)
    assert client.stream(CHARS, state_every=1).state_every == 1


def test_a_call_ended_by_the_server_mid_window_resumes_by_replaying(idle):
    with Client(idle.address, timeout=5) as client:
        whole = client.infer(CHARS, X, version=1)
        stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=5)
        parts = chunks_of(X, LENGTHS)
        results = [stream.feed(chunk) for chunk in parts[:8]]  # state after the 5th; 3 pending
        time.sleep(1.2)  # the server ends the idle call: UNAVAILABLE on the next write
        results += [stream.feed(chunk) for chunk in parts[8:11]]  # replays 3; the window starts again
        assert stream.pending == 3
        time.sleep(1.2)
        assert_states_close(
            stream.checkpoint(), client.infer(CHARS, X[:, : sum(LENGTHS[:11])], version=1).state
        )
        results.append(stream.feed(parts[11]))
        stream.close()
    assert_like_one_call(results, stream.state, whole)


def test_async_sparse_state_resumes_and_checkpoints_like_the_sync_stream(idle):
    parts = chunks_of(X, LENGTHS)

    async def main():
        async with AsyncClient(idle.address, timeout=5) as client:
            whole = await client.infer(CHARS, X, version=1)
            async with client.stream(CHARS, version=1, bidi=True, state_every=4) as stream:
                results = [await stream.feed(chunk) for chunk in parts[:7]]  # state after 1st, 5th
                pending = stream.pending
                with pytest.raises(ValueError, match=r"checkpoint\(\)"):
                    stream.save()
                await asyncio.sleep(1.2)  # the server ends the idle call
                results += [await stream.feed(chunk) for chunk in parts[7:10]]  # replayed first
                checkpoint = await stream.checkpoint()
                middle = await client.infer(CHARS, X[:, : sum(LENGTHS[:10])], version=1)
                results += [await stream.feed(chunk) for chunk in parts[10:]]
            with pytest.raises(ValueError, match="state_every > 1 needs bidi=True"):
                client.stream(CHARS, state_every=3)
            return whole, results, pending, checkpoint, middle, stream

    whole, results, pending, checkpoint, middle, stream = asyncio.run(main())
    assert pending == 2 and stream.pending == 0
    assert [result.state is not None for result in results[:7]] == [i in (0, 4) for i in range(7)]
    assert_states_close(checkpoint, middle.state)
    assert_like_one_call(results, stream.state, whole)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(0, 4), min_size=1, max_size=12),
    every=st.integers(1, 6),
    breaks=st.sets(st.integers(0, 11), max_size=4),
)
def test_any_chunking_window_and_breaks_give_the_answer_of_one_call(client, lengths, every, breaks):
    x = X[:1, : sum(lengths)]
    whole = client.infer(CHARS, x, version=1)
    stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=every)
    results = []
    for index, chunk in enumerate(chunks_of(x, lengths)):
        results.append(stream.feed(chunk))
        if index in breaks:
            stream._drop()  # the call cancelled, as a timeout does: the next feed replays the window
    stream.close()
    assert_like_one_call(results, stream.state, whole)
