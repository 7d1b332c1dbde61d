"""Many bidi streams from one client: a server caps the streams of one connection (lstmserve at 256),
and gRPC refuses a bidi stream past it rather than holding it back (half of 1024 streams on one
connection failed UNAVAILABLE before the client opened a channel per STREAMS_PER_CHANNEL streams)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client
from lstmserve.client._client import STREAMS_PER_CHANNEL
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer

CHUNKS = np.random.default_rng(8).standard_normal((2, 1, 3, 5)).astype(np.float32)  # 2 chunks of (1, 3, 5)


@pytest.fixture(scope="module")
def roomy(repository):
    """A server that lets 700 bidi streams be open at once (--max-streams)."""
    server = InProcessServer(Settings(repository=str(repository), max_streams=700)).start()
    yield server
    server.stop()


def want(address: str) -> np.ndarray:
    """The second chunk's logits of a stream fed both chunks, by unary calls."""
    with Client(address) as client:
        first = client.infer(CHARS, CHUNKS[0], version=1)
        return client.infer(CHARS, CHUNKS[1], state=first.state, version=1).logits


def test_600_async_streams_at_once_open_on_six_channels_and_all_answer(roomy):
    expected = want(roomy.address)

    async def main() -> tuple[list, int]:
        client = AsyncClient(roomy.address, timeout=60)
        opened = asyncio.Event()
        count = [0]

        async def one() -> np.ndarray:
            async with client.stream(CHARS, 1, bidi=True) as stream:
                try:
                    await stream.feed(CHUNKS[0])
                finally:  # a refused stream counts too, or the rest would wait for it for ever
                    count[0] += 1
                    if count[0] == 600:
                        opened.set()
                await opened.wait()  # every stream open at once before any ends
                return (await stream.feed(CHUNKS[1])).logits

        try:
            answers = await asyncio.gather(*(one() for _ in range(600)), return_exceptions=True)
            return answers, len(client.channels)
        finally:
            await client.close()

    answers, channels = asyncio.run(main())
    errors = [answer for answer in answers if isinstance(answer, BaseException)]
    assert not errors, f"{len(errors)} of 600 failed, e.g. {errors[0]!r}"
    assert channels == 600 // STREAMS_PER_CHANNEL
    for answer in answers:
        np.testing.assert_allclose(answer, expected, atol=1e-6)


def test_150_threads_streaming_at_once_on_one_client_all_answer(roomy):
    expected = want(roomy.address)
    together = threading.Barrier(150)
    answers: list = []

    def one(client: Client) -> None:
        try:
            with client.stream(CHARS, 1, bidi=True) as stream:
                try:
                    stream.feed(CHUNKS[0])
                except BaseException:
                    together.abort()  # the others stop waiting for this one
                    raise
                together.wait(60)
                answers.append(stream.feed(CHUNKS[1]).logits)
        except BaseException as exc:  # noqa: BLE001 (counted and reported below)
            answers.append(exc)

    with Client(roomy.address, timeout=60) as client:
        threads = [threading.Thread(target=one, args=(client,)) for _ in range(150)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        channels = len(client.channels)
    errors = [answer for answer in answers if isinstance(answer, BaseException)]
    assert not errors and len(answers) == 150, errors[:1]
    assert channels == 2
    for answer in answers:
        np.testing.assert_allclose(answer, expected, atol=1e-6)


def test_four_clients_in_one_process_each_get_their_own_connection(roomy):
    """gRPC's global subchannel pool would put every client of one address on one connection, past
    the server's 256 streams (144 of 400 streams failed so): each client's channel has its own."""
    expected = want(roomy.address)

    async def main() -> list:
        clients = [AsyncClient(roomy.address, timeout=60) for _ in range(4)]
        opened = asyncio.Event()
        count = [0]

        async def one(client: AsyncClient) -> np.ndarray:
            async with client.stream(CHARS, 1, bidi=True) as stream:
                try:
                    await stream.feed(CHUNKS[0])
                finally:
                    count[0] += 1
                    if count[0] == 400:
                        opened.set()
                await opened.wait()
                return (await stream.feed(CHUNKS[1])).logits

        try:
            return await asyncio.gather(
                *(one(client) for client in clients for _ in range(100)), return_exceptions=True
            )
        finally:
            for client in clients:
                await client.close()

    answers = asyncio.run(main())
    errors = [answer for answer in answers if isinstance(answer, BaseException)]
    assert not errors, f"{len(errors)} of 400 failed, e.g. {errors[0]!r}"
    for answer in answers:
        np.testing.assert_allclose(answer, expected, atol=1e-6)
