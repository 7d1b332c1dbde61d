"""Bidi streams are bounded: how many may be open, how long one may idle, how long a client waits."""

import asyncio
import signal
import time

import grpc
import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client, DeadlineExceededError, ResourceExhaustedError
from lstmserve.client.messages import infer_request
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer, ServerProcess

X = np.random.default_rng(11).standard_normal((1, 6, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def strict(repository):
    """A server that allows two open streams, idle for at most 0.5 s, and 0.5 s to receive a request."""
    running = InProcessServer(
        Settings(repository=str(repository), max_streams=2, stream_idle_seconds=0.5, receive_seconds=0.5)
    ).start()
    yield running
    running.stop()


def test_streams_past_the_limit_are_refused_until_one_closes(strict):
    with Client(strict.address) as client:
        first, second = client.stream(CHARS, bidi=True), client.stream(CHARS, bidi=True)
        first.feed(X)
        second.feed(X)
        third = client.stream(CHARS, bidi=True)
        with pytest.raises(ResourceExhaustedError, match=r"2 streams open \(--max-streams 2\)"):
            third.feed(X)
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the close reaches the server a moment later
            try:
                third.feed(X)
                break
            except ResourceExhaustedError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        second.close()
        third.close()


def test_a_generation_is_a_stream_and_is_refused_past_the_limit_too(strict):
    with Client(strict.address) as client:
        first, second = client.stream(CHARS, bidi=True), client.stream(CHARS, bidi=True)
        first.feed(X)
        second.feed(X)
        with pytest.raises(ResourceExhaustedError, match=r"2 streams open \(--max-streams 2\)"):
            client.generate(CHARS, X, max_steps=3).steps()
        first.close()
        second.close()


def test_an_idle_stream_ends_with_unavailable_and_the_client_resumes_from_its_state(strict):
    with Client(strict.address) as client:
        whole = client.infer(CHARS, X)
        call = client.stub.StreamInfer(_then_silence([infer_request(CHARS, X[:, :3])], seconds=2))
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "idle for over 0.5 s (--stream-idle-seconds)" in caught.value.details()

        stream = client.stream(CHARS, bidi=True)
        stream.feed(X[:, :3])
        time.sleep(1.6)  # the server ends the idle call; the next feed opens a new one from the state
        rest = stream.feed(X[:, 3:])
        stream.close()
    np.testing.assert_allclose(rest.output, whole.output[:, 3:], atol=1e-6, rtol=0)


def test_an_async_stream_resumes_after_the_server_ended_its_call(strict):
    async def main():
        async with AsyncClient(strict.address, timeout=5) as client:
            whole = await client.infer(CHARS, X)
            stream = client.stream(CHARS, bidi=True)
            await stream.feed(X[:, :3])
            await asyncio.sleep(1.6)  # the server ends the idle call
            rest = await stream.feed(X[:, 3:])  # a new call, from the state the client holds
            await stream.close()
            return whole, rest

    whole, rest = asyncio.run(main())
    np.testing.assert_allclose(rest.output, whole.output[:, 3:], atol=1e-6, rtol=0)


def _then_silence(requests, seconds):
    """The requests, then nothing for a while, the call left open."""
    yield from requests
    time.sleep(seconds)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_bidi_chunk_honours_the_client_timeout_when_the_server_freezes(repository, kind):
    server = ServerProcess(repository)
    try:
        if kind == "sync":
            with Client(server.address, timeout=1.0) as client:
                stream = client.stream(CHARS, bidi=True)
                first = stream.feed(X[:, :3])
                server.process.send_signal(signal.SIGSTOP)
                started = time.monotonic()
                with pytest.raises(DeadlineExceededError, match="no answer within 1 s"):
                    stream.feed(X[:, 3:])
                waited = time.monotonic() - started
                server.process.send_signal(signal.SIGCONT)
                rest = stream.feed(X[:, 3:])  # a new call, from the state the client holds
                whole = client.infer(CHARS, X)
        else:

            async def main():
                async with AsyncClient(server.address, timeout=1.0) as client:
                    stream = client.stream(CHARS, bidi=True)
                    first = await stream.feed(X[:, :3])
                    server.process.send_signal(signal.SIGSTOP)
                    started = time.monotonic()
                    with pytest.raises(DeadlineExceededError, match="no answer within 1 s"):
                        await stream.feed(X[:, 3:])
                    waited = time.monotonic() - started
                    server.process.send_signal(signal.SIGCONT)
                    rest = await stream.feed(X[:, 3:])
                    return first, rest, waited, await client.infer(CHARS, X)

            first, rest, waited, whole = asyncio.run(main())
    finally:
        server.process.send_signal(signal.SIGCONT)
        assert server.terminate() == 0
    assert 0.9 < waited < 5
    np.testing.assert_allclose(first.output, whole.output[:, :3], atol=1e-6, rtol=0)
    np.testing.assert_allclose(rest.output, whole.output[:, 3:], atol=1e-6, rtol=0)


def test_a_unary_call_whose_request_never_comes_ends_and_frees_its_place(strict):
    """A client that opens Infer and sends nothing (a slow-loris) is ended after --receive-seconds."""
    with Client(strict.address) as client:
        hang = client._channel.stream_stream("/lstmserve.v1.LSTMService/Infer")
        call = hang(_then_silence([], seconds=3), timeout=10)  # no request, and no end of requests
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "did not arrive within 0.5 s (--receive-seconds)" in caught.value.details()
        assert time.monotonic() - started < 2.5
        assert client.infer(CHARS, X).output.shape == (1, 6, 7)
