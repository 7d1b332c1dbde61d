"""Issue 13, hostile pass, against the real server: chunks a coalescing client must not merge as sent
(a length past its own steps, lengths or state rows of the wrong shape), a bad row that must not stop
a queue from gathering afterwards, a waiter cancelled while gathered, and a bidi stream interrupted
while its answer is on the way."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client, InvalidArgumentError
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer
from .held_sends import held


def gathered(
    client: Client, chunks: list[tuple], model: str = CHARS, features: int = 5, lead_state=None
) -> list:
    """Each (x, state, lengths) sent by a thread of its own while a lead call (with lead_state, a
    1-row state) holds their queue: its result, or the exception it raised."""
    first = held(client, len(chunks))
    lead = np.ones((1, 3, features), np.float32)
    with ThreadPoolExecutor(len(chunks) + 1) as threads:
        leading = threads.submit(client.infer, model, lead, lead_state, None, 1)
        assert first.wait(10)
        feeds = [threads.submit(client.infer, model, x, s, n, 1) for x, s, n in chunks]
        leading.result()
        return [feed.exception() or feed.result() for feed in feeds]


def alone(server, x, state=None, lengths=None):
    with Client(server.address, coalesce=False) as separate:
        return separate.infer(CHARS, x, state, lengths, version=1)


def test_a_length_past_its_own_steps_is_refused_even_beside_a_longer_chunk(server):
    """Merged, [4] fell inside the 4-step chunk's padding: the 2-step chunk was run over 2 zero
    steps and answered, where alone it is refused."""
    short, long = np.ones((1, 2, 5), np.float32), np.ones((1, 4, 5), np.float32)
    with Client(server.address) as client:
        results = gathered(client, [(short, None, [4]), (long, None, None)])
    assert isinstance(results[0], InvalidArgumentError) and "sequence_lengths" in results[0].details
    np.testing.assert_allclose(results[1].output, alone(server, long).output, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "bad",
    [
        [(np.ones((1, 3, 5), np.float32), None, [[3]])],  # 2-D lengths: the merge itself failed
        [(np.ones((1, 3, 5), np.float32), None, 3)],  # a 0-d length
        # one too few and one too many: merged, 4 rows and 4 lengths, accepted and misattributed
        [(np.ones((2, 3, 5), np.float32), None, [1]), (np.ones((2, 3, 5), np.float32), None, [3, 3, 2])],
    ],
    ids=["2d", "scalar", "offsetting"],
)
def test_lengths_of_the_wrong_shape_fail_only_their_own_chunk(server, bad):
    good = np.random.default_rng(5).standard_normal((1, 3, 5)).astype(np.float32)
    with Client(server.address) as client:
        results = gathered(client, [*bad, (good, None, None), (good, None, None)])
    for result in results[: len(bad)]:
        assert isinstance(result, InvalidArgumentError) and "sequence_lengths" in result.details, result
    want = alone(server, good).output
    for result in results[len(bad) :]:
        np.testing.assert_allclose(result.output, want, atol=1e-6, rtol=0)


def test_an_empty_batch_is_refused_even_beside_others(server):
    """Merged, a chunk of 0 rows added nothing to the call and got an empty answer, where alone it
    is refused."""
    good = np.ones((1, 3, 5), np.float32)
    with Client(server.address) as client:
        results = gathered(client, [(np.ones((0, 3, 5), np.float32), None, None), (good, None, None)])
    assert isinstance(results[0], InvalidArgumentError) and "empty batch" in results[0].details
    np.testing.assert_allclose(results[1].output, alone(server, good).output, atol=1e-6, rtol=0)


@pytest.mark.parametrize("coalesce", [True, False])
def test_int64_lengths_past_int32_are_refused_not_wrapped(server, coalesce):
    """2**32 + 2 became 2: the chunk ran as if 2 of its 3 steps were asked for. The server takes
    int64 lengths and would refuse it (past the chunk's 3 steps)."""
    x = np.ones((1, 3, 5), np.float32)
    with Client(server.address, coalesce=coalesce) as client, pytest.raises(InvalidArgumentError):
        client.infer(CHARS, x, lengths=np.array([2**32 + 2], np.int64), version=1)


def test_states_of_the_wrong_rows_are_refused_not_lent_to_each_other(server):
    """A 1-row chunk and a 3-row chunk each with a 2-row state: merged, 4 rows of input and 4 of
    state, accepted, one row of state run with another chunk's input."""
    two = alone(server, np.ones((2, 3, 5), np.float32)).state
    lead = alone(server, np.ones((1, 3, 5), np.float32)).state
    one, three = np.ones((1, 3, 5), np.float32), np.ones((3, 3, 5), np.float32)
    with Client(server.address) as client:
        results = gathered(client, [(one, two, None), (three, two, None)], lead_state=lead)
    for result in results:
        assert isinstance(result, InvalidArgumentError) and "must have shape" in result.details, result


def test_a_state_of_other_layer_sizes_fails_only_its_own_chunk(server):
    """A state with the right fingerprint but a layer of the wrong size could not be stacked: the
    merge raised, failing every chunk gathered with it."""
    x = np.ones((1, 3, 5), np.float32)
    state = alone(server, x).state
    (c0, h0), (c1, h1) = state.layers
    wrong = type(state)(state.fingerprint, ((c0, h0), (c1[:, :5], h1[:, :5])))
    with Client(server.address) as client:
        results = gathered(client, [(x, state, None), (x, state, None), (x, wrong, None)], lead_state=state)
    assert isinstance(results[2], InvalidArgumentError), results[2]
    want = alone(server, x, state).output
    for result in results[:2]:
        np.testing.assert_allclose(result.output, want, atol=1e-6, rtol=0)


def test_classify_last_logits_of_chunks_of_other_lengths_are_each_their_own(server):
    """The digits model answers logits at each row's last step: gathered rows padded to a longer
    chunk, or cut short by their own lengths, still get their own."""
    rng = np.random.default_rng(11)
    chunks = [
        (rng.standard_normal((1, 4, 8)).astype(np.float32), None, None),
        (rng.standard_normal((2, 6, 8)).astype(np.float32), None, [6, 3]),
        (rng.standard_normal((1, 8, 8)).astype(np.float32), None, None),
        (rng.standard_normal((1, 5, 8)).astype(np.float32), None, [0]),
    ]
    with Client(server.address) as client:
        results = gathered(client, chunks, DIGITS, 8)
        assert client.coalescer.calls == 2  # the lead, then all four in one call
    with Client(server.address, coalesce=False) as separate:
        for (x, _, lengths), result in zip(chunks, results):
            want = separate.infer(DIGITS, x, None, lengths, version=1)
            np.testing.assert_allclose(result.logits, want.logits, atol=1e-6, rtol=0)
            np.testing.assert_allclose(result.output, want.output, atol=1e-6, rtol=0)
            for mine, theirs in zip(result.state.layers, want.state.layers):
                np.testing.assert_allclose(mine, theirs, atol=1e-6, rtol=0)


def test_one_bad_row_does_not_stop_the_queue_gathering_afterwards(server):
    """A NaN row got the gathered call refused (INVALID_ARGUMENT, resent row by row: right), and the
    key's byte budget halved below that small call: the same 16 streams' next chunks then went in
    calls of 8 rows, for good (a size refusal alone should shrink it)."""
    good = np.ones((1, 3, 5), np.float32)
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    sizes: list[int] = []
    with Client(server.address) as client:
        send = client.coalescer._send

        def recording(request):
            sizes.append(request.input.shape[0])
            return send(request)

        client.coalescer._send = recording
        first = gathered(client, [(bad, None, None)] + [(good, None, None)] * 15)
        sizes.clear()
        second = gathered(client, [(good, None, None)] * 16)
    assert isinstance(first[0], InvalidArgumentError) and "NaN" in first[0].details
    assert not any(isinstance(result, Exception) for result in first[1:] + second)
    assert sizes == [1, 16], sizes  # the lead, then every waiting chunk in one call


def test_an_async_waiter_cancelled_while_gathered_leaves_the_others_answered(server):
    x = np.random.default_rng(6).standard_normal((1, 3, 5)).astype(np.float32)

    async def main():
        async with AsyncClient(server.address) as client:
            coalescer, send = client.coalescer, client.coalescer._send
            gathered_all = asyncio.Event()

            async def held_send(request):
                await gathered_all.wait()
                return await send(request)

            coalescer._send = held_send
            lead = asyncio.ensure_future(client.infer(CHARS, x, version=1))
            await asyncio.sleep(0)
            feeds = [asyncio.ensure_future(client.infer(CHARS, x, version=1)) for _ in range(6)]
            while sum(len(queue.waiting) for queue in coalescer._queues.values()) < 6:
                await asyncio.sleep(0.001)
            feeds[2].cancel()
            feeds[4].cancel()
            gathered_all.set()
            results = await asyncio.wait_for(asyncio.gather(lead, *feeds, return_exceptions=True), 20)
            return results, coalescer._queues

    results, queues = asyncio.run(main())
    want = alone(server, x).output
    for i, result in enumerate(results):
        if i in (3, 5):
            assert isinstance(result, asyncio.CancelledError)
        else:
            np.testing.assert_allclose(result.output, want, atol=1e-6, rtol=0)
    assert not queues  # every queue idle again: nothing left waiting


class Interrupted(BaseException):
    """What a signal handler raises (as KeyboardInterrupt is raised)."""


@pytest.mark.parametrize("state_every, outputs", [(1, None), (3, ["output"])])
def test_a_bidi_feed_interrupted_mid_answer_does_not_shift_the_next_answers(server, state_every, outputs):
    """Interrupted while waiting for its answer, the feed left the call open with that answer unread:
    the next feed got it (16384 steps) instead of its own (2 steps)."""
    rng = np.random.default_rng(7)
    first, long, last = (rng.standard_normal((1, n, 5)).astype(np.float32) for n in (3, 16384, 2))
    with Client(server.address, coalesce=False) as separate:
        want = separate.infer(CHARS, np.concatenate([first, last], axis=1), version=1)

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with Client(server.address, timeout=10) as client:
            with client.stream(CHARS, version=1, bidi=True) as timing:
                started = time.perf_counter()
                timing.feed(long)
            seconds = time.perf_counter() - started  # an answer's time, to interrupt within it
            for attempt in range(5):
                stream = client.stream(CHARS, version=1, bidi=True, state_every=state_every, outputs=outputs)
                stream.feed(first)
                try:
                    signal.setitimer(signal.ITIMER_REAL, seconds / 3 / (attempt + 1))
                    stream.feed(long)
                    signal.setitimer(signal.ITIMER_REAL, 0)
                except Interrupted:
                    break
            else:
                pytest.fail("the long feed was never interrupted")
            result = stream.feed(last)
            stream.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert result.output.shape == (1, 2, 7), result.output.shape
    np.testing.assert_allclose(result.output, want.output[:, 3:], atol=1e-5, rtol=0)
    for mine, theirs in zip(stream.state.layers, want.state.layers):
        np.testing.assert_allclose(mine, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("state_every", [1, 3])
def test_an_async_bidi_feed_cancelled_mid_answer_does_not_shift_the_next_answers(server, state_every):
    rng = np.random.default_rng(8)
    first, long, last = (rng.standard_normal((1, n, 5)).astype(np.float32) for n in (3, 16384, 2))
    with Client(server.address, coalesce=False) as separate:
        want = separate.infer(CHARS, np.concatenate([first, last], axis=1), version=1)

    async def main():
        async with AsyncClient(server.address, timeout=10) as client:
            async with client.stream(CHARS, version=1, bidi=True) as timing:
                started = time.perf_counter()
                await timing.feed(long)
                seconds = time.perf_counter() - started
            stream = client.stream(CHARS, version=1, bidi=True, state_every=state_every)
            await stream.feed(first)
            feeding = asyncio.ensure_future(stream.feed(long))
            await asyncio.sleep(seconds / 3)
            feeding.cancel()
            with pytest.raises(asyncio.CancelledError):
                await feeding
            result = await stream.feed(last)
            await stream.close()
            return result, stream.state

    result, state = asyncio.run(main())
    assert result.output.shape == (1, 2, 7), result.output.shape
    np.testing.assert_allclose(result.output, want.output[:, 3:], atol=1e-5, rtol=0)
    for mine, theirs in zip(state.layers, want.state.layers):
        np.testing.assert_allclose(mine, theirs, atol=1e-5, rtol=0)


def test_threads_first_chunks_on_a_sealing_server_then_a_sparse_stream_checkpointed_and_forked(
    repository, tmp_path
):
    """Sealed states with coalescing on: the first chunks (no state yet) are gathered, their sealed
    answer cannot be split, so each goes again alone; the sealed states then go alone and resume
    exactly. A sparse-state bidi stream there: checkpoint twice, fork, close twice."""
    pytest.importorskip("cryptography", reason="pip install cryptography (lstmserve[serve] has it)")
    key = tmp_path / "state.key"
    key.write_text(os.urandom(32).hex() + "\n")
    sealing = InProcessServer(Settings(repository=str(repository), state_key_file=str(key))).start()
    rng = np.random.default_rng(10)
    xs = [rng.standard_normal((1, 4, 5)).astype(np.float32) for _ in range(6)]
    try:
        with Client(sealing.address) as client:
            firsts = gathered(client, [(x[:, :2], None, None) for x in xs])
            assert client.coalescer.sealing
            rests = [client.infer(CHARS, x[:, 2:], first.state, version=1) for x, first in zip(xs, firsts)]
            for x, first, rest in zip(xs, firsts, rests):
                whole = client.infer(CHARS, x, version=1)
                assert first.state.sealed and rest.state.sealed
                got = np.concatenate([first.output, rest.output], axis=1)
                np.testing.assert_allclose(got, whole.output, atol=1e-6, rtol=0)

            x = rng.standard_normal((2, 9, 5)).astype(np.float32)
            whole = client.infer(CHARS, x, version=1)
            stream = client.stream(CHARS, version=1, bidi=True, state_every=4, outputs=["output"])
            assert stream.checkpoint() is None  # nothing fed yet
            outputs = [stream.feed(x[:, i : i + 3]).output for i in (0, 3)]
            assert stream.pending == 2
            held = stream.checkpoint()
            assert held.sealed and stream.pending == 0 and stream.checkpoint() == held
            fork = stream.fork()
            outputs.append(stream.feed(x[:, 6:]).output)
            stream.close()
            stream.close()
            np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole.output, atol=1e-6, rtol=0)
            forked = fork.feed(x[:, 6:])
            fork.close()
            np.testing.assert_allclose(forked.output, whole.output[:, 6:], atol=1e-6, rtol=0)
            assert fork.state.sealed
    finally:
        sealing.stop()


def outcome(result) -> tuple:
    """What a caller got, comparable: an error's type and details, or the arrays."""
    if isinstance(result, Exception):
        return type(result).__name__, getattr(result, "details", str(result))
    state = [] if result.state is None else [a for layer in result.state.layers for a in layer]
    return "ok", [result.output, result.logits, *state]


def random_chunk(rng: np.random.Generator, states: dict[int, object]) -> tuple:
    """A chunk for chars v1, good or bad in one of the ways a careless caller's may be."""
    rows, steps = int(rng.integers(1, 4)), int(rng.integers(2, 7))
    x = rng.standard_normal((rows, steps, 5)).astype(np.float32)
    lengths = rng.integers(0, steps + 1, rows).tolist() if rng.random() < 0.5 else None
    state = states[rows] if rng.random() < 0.4 else None
    kind = rng.choice(["good"] * 6 + ["long", "count", "nan", "features", "empty", "rank", "rows"])
    if kind == "long":
        lengths = [steps + 1] * rows
    elif kind == "count":
        lengths = [1] * (rows + 1)
    elif kind == "nan":
        x[0, 0, 0] = np.nan
    elif kind == "features":
        x = x[:, :, :4]
    elif kind == "empty":
        x, lengths = x[:0], None
    elif kind == "rank":
        x = x[0]
    elif kind == "rows":
        state = states[rows % 3 + 1]
    return x, state, lengths


@pytest.mark.parametrize("seed", range(6))
def test_a_random_mix_of_chunks_gathered_gets_what_each_gets_alone(server, seed):
    rng = np.random.default_rng(100 + seed)
    with Client(server.address, coalesce=False) as separate:
        states = {
            r: separate.infer(CHARS, np.ones((r, 2, 5), np.float32), version=1).state for r in (1, 2, 3)
        }
        chunks = [random_chunk(rng, states) for _ in range(12)]
        want = []
        for x, state, lengths in chunks:
            try:
                want.append(outcome(separate.infer(CHARS, x, state, lengths, version=1)))
            except Exception as error:  # what the caller would get, to compare
                want.append(outcome(error))
    with Client(server.address) as client:
        got = [outcome(result) for result in gathered(client, chunks)]
    for i, (mine, theirs) in enumerate(zip(got, want)):
        assert mine[0] == theirs[0], (i, mine, theirs)
        if mine[0] != "ok":
            assert mine[1] == theirs[1], (i, mine, theirs)
            continue
        for a, b in zip(mine[1], theirs[1]):
            assert (a is None) == (b is None), i
            if a is not None:
                np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"chunk {i}")


def test_lengths_that_are_not_integers_are_refused_by_the_client():
    """1.5 steps was cast to 1 silently; no server is needed to refuse it."""
    from lstmserve.client.messages import infer_request

    with pytest.raises(TypeError, match="lengths must be integers, got float64"):
        infer_request(CHARS, np.ones((1, 3, 5), np.float32), lengths=[1.5])
    wide = infer_request(CHARS, np.ones((1, 3, 5), np.float32), lengths=[2**32 + 2])
    assert wide.sequence_lengths.dtype == pb.INT64  # sent as it is, for the server to refuse by name
