import asyncio

import numpy as np
import pytest

from lstmserve.client import AsyncClient, NotFoundError

from ..conftest import CHARS, DIGITS


def test_async_client_streams_like_the_sync_one(server):
    x = np.random.default_rng(12).standard_normal((2, 9, 5)).astype(np.float32)

    async def main():
        async with AsyncClient(server.address) as client:
            whole = await client.infer(CHARS, x, version=1)
            outputs = {}
            for bidi in (False, True):
                async with client.stream(CHARS, version=1, bidi=bidi) as stream:
                    parts = [await stream.feed(x[:, a:b]) for a, b in ((0, 2), (2, 3), (3, 9))]
                outputs[bidi] = np.concatenate([p.output for p in parts], axis=1)
            models = await client.models()
            with pytest.raises(NotFoundError):
                await client.model("nope")
            return whole, outputs, models

    whole, outputs, models = asyncio.run(main())
    for output in outputs.values():
        np.testing.assert_allclose(output, whole.output, atol=1e-6, rtol=0)
    assert {m.name for m in models} == {CHARS, DIGITS}


def test_async_streams_run_concurrently_without_mixing(server):
    rng = np.random.default_rng(13)
    xs = [rng.standard_normal((1, 10, 5)).astype(np.float32) for _ in range(8)]

    async def one(client, x, bidi):
        stream = client.stream(CHARS, version=1, bidi=bidi)
        outputs = [(await stream.feed(x[:, t : t + 1])).output for t in range(10)]
        await stream.close()
        return np.concatenate(outputs, axis=1)

    async def main():
        async with AsyncClient(server.address) as client:
            streamed = await asyncio.gather(*(one(client, x, i % 2 == 0) for i, x in enumerate(xs)))
            wholes = await asyncio.gather(*(client.infer(CHARS, x, version=1) for x in xs))
            return streamed, wholes

    streamed, wholes = asyncio.run(main())
    for output, whole in zip(streamed, wholes):
        np.testing.assert_allclose(output, whole.output, atol=1e-6, rtol=0)
