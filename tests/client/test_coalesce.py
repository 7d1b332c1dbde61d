"""AsyncClient(coalesce=True) against the real server: many streams' chunks go as few calls, each
stream's answers equal separate calls, one stream's bad chunk fails only that stream, rows bounded."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client, InvalidArgumentError

from ..conftest import CHARS

STREAMS, CHUNKS = 24, 5


def sequences(seed: int):
    rng = np.random.default_rng(seed)
    cuts = [np.cumsum(rng.integers(1, 5, CHUNKS)) for _ in range(STREAMS)]
    xs = [rng.standard_normal((1, int(c[-1]), 5)).astype(np.float32) for c in cuts]
    return xs, cuts


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
        for x, streamed in zip(xs, answers):
            whole = separate.infer(CHARS, x, version=1)
            output = np.concatenate([answer.output for answer in streamed], axis=1)
            np.testing.assert_allclose(output, whole.output, atol=1e-6, rtol=0)
            for (c, h), (c1, h1) in zip(streamed[-1].state.layers, whole.state.layers):
                np.testing.assert_allclose(c, c1, atol=1e-6, rtol=0)
                np.testing.assert_allclose(h, h1, atol=1e-6, rtol=0)


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
