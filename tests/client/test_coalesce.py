"""Coalescing (on by default in Client and AsyncClient) against the real server: many streams' chunks
go as few calls, each stream's answers equal separate calls, one stream's bad chunk fails only that
stream, rows bounded, a lone stream never held back."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client, InvalidArgumentError, ResourceExhaustedError
from lstmserve.client.gathering import MAX_ROWS, Gathering, Waiting

from ..conftest import CHARS
from .held_sends import held

STREAMS, CHUNKS = 24, 5


def sequences(seed: int):
    rng = np.random.default_rng(seed)
    cuts = [np.cumsum(rng.integers(1, 5, CHUNKS)) for _ in range(STREAMS)]
    xs = [rng.standard_normal((1, int(c[-1]), 5)).astype(np.float32) for c in cuts]
    return xs, cuts


def assert_like_whole_calls(client: Client, xs, answers) -> None:
    """Each stream's chunked answers equal one call of its whole sequence (outputs, final state)."""
    for x, streamed in zip(xs, answers):
        whole = client.infer(CHARS, x, version=1)
        output = np.concatenate([answer.output for answer in streamed], axis=1)
        np.testing.assert_allclose(output, whole.output, atol=1e-6, rtol=0)
        for (c, h), (c1, h1) in zip(streamed[-1].state.layers, whole.state.layers):
            np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
            np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)


def test_coalesced_streams_equal_separate_calls_in_fewer_calls(server):
    xs, cuts = sequences(1)

    async def main():
        async with AsyncClient(server.address, coalesce=True) as client:

            async def one(x, cut):
                stream = client.stream(CHARS, version=1)
                answers, start = [], 0
                for end in cut:
                    answers.append(await stream.feed(x[:, start:end]))
                    start = end
                return answers

            answers = await asyncio.gather(*(one(x, cut) for x, cut in zip(xs, cuts)))
            return answers, client.coalescer.calls

    answers, calls = asyncio.run(main())
    assert calls < STREAMS * CHUNKS / 2, calls  # gathered: far fewer calls than feeds
    with Client(server.address) as separate:
        assert_like_whole_calls(separate, xs, answers)


def test_one_streams_bad_chunk_fails_that_stream_only(server):
    good = np.ones((1, 3, 5), np.float32)
    bad = good.copy()
    bad[0, 1, 2] = np.nan

    async def main():
        async with AsyncClient(server.address, coalesce=True) as client:
            blocker = asyncio.ensure_future(client.infer(CHARS, np.ones((1, 200, 5)), version=1))
            feeds = [client.infer(CHARS, bad if i == 3 else good, version=1) for i in range(8)]
            results = await asyncio.gather(*feeds, return_exceptions=True)
            await blocker
            return results

    results = asyncio.run(main())
    assert isinstance(results[3], InvalidArgumentError) and "NaN" in results[3].details
    with Client(server.address) as separate:
        want = separate.infer(CHARS, good, version=1).output
    for i, result in enumerate(results):
        if i != 3:
            np.testing.assert_allclose(result.output, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("max_rows", [4])
def test_a_gathered_call_holds_at_most_max_rows(server, max_rows):
    sizes: list[int] = []

    async def main():
        async with AsyncClient(server.address, coalesce=True) as client:
            send_one = client.coalescer._send

            async def recording(request):
                sizes.append(request.input.shape[0])
                return await send_one(request)

            client.coalescer._send, client.coalescer.max_rows = recording, max_rows
            return await asyncio.gather(
                *(client.infer(CHARS, np.ones((1, 2, 5)), version=1) for _ in range(17))
            )

    results = asyncio.run(main())
    assert len(results) == 17 and max(sizes) <= max_rows and len(sizes) < 17, sizes


def test_a_chunk_with_the_wrong_features_is_refused_alone(server):
    async def main():
        async with AsyncClient(server.address, coalesce=True) as client:
            blocker = asyncio.ensure_future(client.infer(CHARS, np.ones((1, 200, 5)), version=1))
            feeds = [client.infer(CHARS, np.ones((1, 2, 4 if i == 1 else 5)), version=1) for i in range(4)]
            results = await asyncio.gather(*feeds, return_exceptions=True)
            await blocker
            return results

    results = asyncio.run(main())
    assert isinstance(results[1], InvalidArgumentError) and "4 features" in results[1].details
    assert all(r.output.shape == (1, 2, 7) for i, r in enumerate(results) if i != 1)


# Client (threads): the same gathering, by ThreadCoalescer.


def test_threads_streams_equal_separate_calls_in_fewer_calls(server):
    xs, cuts = sequences(2)
    with Client(server.address) as client:  # coalescing is on by default

        def one(x, cut):
            stream = client.stream(CHARS, version=1)
            answers, start = [], 0
            for end in cut:
                answers.append(stream.feed(x[:, start:end]))
                start = end
            return answers

        with ThreadPoolExecutor(STREAMS) as threads:
            answers = list(threads.map(one, xs, cuts))
        calls = client.coalescer.calls
        assert calls < STREAMS * CHUNKS / 2, calls
        assert_like_whole_calls(client, xs, answers)


def test_threads_one_bad_chunk_fails_that_stream_only(server):
    good = np.ones((1, 3, 5), np.float32)
    bad = good.copy()
    bad[0, 1, 2] = np.inf
    with Client(server.address) as client:
        first = held(client, chunks=8)
        with ThreadPoolExecutor(9) as threads:
            lead = threads.submit(client.infer, CHARS, good, version=1)
            first.wait(10)
            chunks = [bad if i == 3 else good for i in range(8)]
            feeds = [threads.submit(client.infer, CHARS, chunk, version=1) for chunk in chunks]
            lead.result()
            errors = [feed.exception() for feed in feeds]
        assert client.coalescer.calls >= 3  # the lead, the gathered call, then each row alone
        want = client.infer(CHARS, good, version=1).output
    assert isinstance(errors[3], InvalidArgumentError) and "NaN or Inf" in errors[3].details
    for i, feed in enumerate(feeds):
        if i != 3:
            np.testing.assert_allclose(feed.result().output, want, atol=1e-6, rtol=0)


def test_a_lone_stream_sends_each_chunk_at_once(server):
    with Client(server.address) as client:
        stream = client.stream(CHARS, version=1)
        for _ in range(5):
            stream.feed(np.ones((1, 2, 5)))
        assert client.coalescer.calls == 5  # no call was held back or merged


def test_closing_the_client_fails_what_still_waits(server):
    client = Client(server.address)
    feeds = 2  # both wait behind the lead call
    first = held(client, chunks=feeds)
    with ThreadPoolExecutor(feeds + 1) as threads:
        lead = threads.submit(client.infer, CHARS, np.ones((1, 2, 5)), version=1)
        first.wait(10)
        sent = [threads.submit(client.infer, CHARS, np.ones((1, 2, 5)), version=1) for _ in range(feeds)]
        while sum(len(queue.waiting) for queue in client.coalescer._queues.values()) < 2:
            time.sleep(0.001)
        client.coalescer.close()  # as Client.close() does, before the lead call returns
        lead.result()
        for feed in sent:
            error = feed.exception(10)
            assert error is not None and "closed" in str(error)
    client.close()


def _gathered(client: Client, x: np.ndarray, sizes: list[tuple[int, int]]) -> list:
    """25 chunks `x` of chars v1 from threads, the 24 after the first held until all wait, so that they
    gather; each call sent adds its (rows, steps) to `sizes`. Their answers, in order sent."""
    send = client.coalescer._send

    def recording(request):
        sizes.append((request.input.shape[0], request.input.shape[1]))
        return send(request)

    client.coalescer._send = recording
    first = held(client, chunks=24)  # it wraps `recording` until the chunks have gathered
    with ThreadPoolExecutor(25) as threads:
        lead = threads.submit(client.infer, CHARS, x, version=1)
        first.wait(10)
        feeds = [threads.submit(client.infer, CHARS, x, version=1) for _ in range(24)]
        answers = [lead.result(), *(feed.result() for feed in feeds)]
    client.coalescer._send = send
    return answers


def test_gathered_calls_stay_within_the_servers_row_steps(server):
    """24 chunks of 2000 steps could never go as one call (48000 padded row-steps, over the server's
    32768): they are gathered into calls within it. This server takes messages of 1 MiB only, so a
    gathered call of 16 rows (1.8 MB of answer) is refused and resent row by row: once, for the
    key's budget shrinks below it, and the next round's gathered calls all go through."""
    x = np.random.default_rng(3).standard_normal((1, 2000, 5)).astype(np.float32)
    with Client(server.address) as client:
        rounds: list[list[tuple[int, int]]] = []
        for _ in range(2):
            rounds.append([])
            answers = _gathered(client, x, rounds[-1])
            for answer in answers[1:]:
                np.testing.assert_allclose(answer.output, answers[0].output, atol=1e-6, rtol=0)
    for sent in rounds:
        assert all(rows * steps <= 32768 for rows, steps in sent), sent
        assert len(sent) < 25, sent  # gathered
    assert sum(rows for rows, _ in rounds[0]) - 25 <= 16, rounds[0]  # at most one call refused
    assert sum(rows for rows, _ in rounds[1]) == 25, rounds[1]  # none: the budget learned


def test_a_refusal_shrinks_the_lanes_budget_by_the_limit_it_names_not_by_its_words():
    gathering = Gathering(MAX_ROWS)
    batch = [Waiting(CHARS, 1, (), np.zeros((1, 100, 5), np.float32), None, None) for _ in range(2)]
    key = gathering._key(batch[0])
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    # A row's fault, worded like a limit's: each chunk goes again alone; the budget stays.
    assert gathering._refused(batch, InvalidArgumentError(invalid, "not a limit (--max-request-rows)"))
    assert key not in gathering._budget
    # A limit named in the trailing metadata: alone again, and the lane gathers less from now on.
    named = InvalidArgumentError(invalid, "too big", limit="max_request_row_steps")
    assert gathering._refused(batch, named) and gathering._budget[key] == 200 * 5 * 4 / 2
    # gRPC's own refusal of a message over a channel's limit names none: its words are all there is.
    del gathering._budget[key]
    own = ResourceExhaustedError(exhausted, "SERVER: Received message larger than max (1200026 vs. 1048576)")
    assert gathering._refused(batch, own) and key in gathering._budget
    # A full queue: retrying later can succeed, so the whole call fails and nothing shrinks.
    del gathering._budget[key]
    queue = ResourceExhaustedError(exhausted, "4 rows queued", limit="max_queue_rows")
    assert not gathering._refused(batch, queue) and key not in gathering._budget


@pytest.fixture(scope="module")
def small_server(repository):
    """Requests of at most 8000 row-steps (the default is 32768), messages of 1 MiB."""
    from lstmserve.server.settings import Settings

    from ..servers import InProcessServer

    running = InProcessServer(
        Settings(repository=str(repository), max_request_row_steps=8000, max_message_bytes=1 << 20)
    ).start()
    yield running
    running.stop()


def test_a_client_that_asked_gathers_within_the_servers_own_limits(small_server):
    """After client.model(), the coalescer sizes its calls by the limits GetModel returned: 24 chunks
    of 2000 steps go in calls of at most 4 rows, and the server refuses none of them."""
    sizes: list[tuple[int, int]] = []
    x = np.random.default_rng(3).standard_normal((1, 2000, 5)).astype(np.float32)
    with Client(small_server.address) as client:
        assert client.model(CHARS).limits.max_request_row_steps == 8000
        assert client.coalescer.limits.max_request_row_steps == 8000
        answers = _gathered(client, x, sizes)
    for answer in answers[1:]:
        np.testing.assert_allclose(answer.output, answers[0].output, atol=1e-6, rtol=0)
    assert all(rows * steps <= 8000 for rows, steps in sizes), sizes
    assert len(sizes) < 25 and sum(rows for rows, _ in sizes) == 25, sizes  # gathered; none refused
