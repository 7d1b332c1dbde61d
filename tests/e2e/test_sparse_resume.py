"""A bidi stream with sparse state (state_every=4) survives a failure in the middle of its window: the
replica it talks to is killed, or the server freezes past the client's timeout. The next feed (or
checkpoint) opens a new call, replays the chunks fed since the last state held, and the outputs and
final state are those of one call over the whole sequence."""

import asyncio
import signal
import time

import pytest

from lstmserve.client import AsyncClient, Client, DeadlineExceededError

from ..client.test_sparse_state import LENGTHS, OUTPUTS, X, assert_like_one_call, chunks_of
from ..conftest import CHARS
from ..servers import ServerProcess
from .tcp_balancer import TcpBalancer

PARTS = chunks_of(X, LENGTHS)
EVERY = 4  # with OUTPUTS named, the state comes back after chunks 4, 8, 12: after 6, 2 are pending


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_resumes_on_the_other_replica_when_its_own_dies_mid_window(repository, kind):
    replicas = [ServerProcess(repository), ServerProcess(repository)]
    balancer = TcpBalancer([replica.port for replica in replicas])  # the first connection: replicas[0]

    def crash() -> None:
        replicas[0].kill()  # nothing on that server survives, the held state included
        time.sleep(0.3)  # the balancer passes the dropped connection on to the client

    try:
        if kind == "sync":
            with Client(balancer.address, timeout=10) as client:
                stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=EVERY)
                results = [stream.feed(chunk) for chunk in PARTS[:6]]
                pending = stream.pending
                crash()
                results += [stream.feed(chunk) for chunk in PARTS[6:]]  # the first replays 2
                stream.close()
                whole = client.infer(CHARS, X, version=1)
        else:

            async def main():
                async with AsyncClient(balancer.address, timeout=10) as client:
                    stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=EVERY)
                    results = [await stream.feed(chunk) for chunk in PARTS[:6]]
                    pending = stream.pending
                    crash()
                    results += [await stream.feed(chunk) for chunk in PARTS[6:]]
                    await stream.close()
                    return stream, results, pending, await client.infer(CHARS, X, version=1)

            stream, results, pending, whole = asyncio.run(main())
    finally:
        balancer.close()
        replicas[0].kill()
        assert replicas[1].terminate() == 0
    assert pending == 2 and stream.pending == 0
    assert balancer.connections[replicas[1].port] >= 1  # the rest went to the other replica
    assert_like_one_call(results, stream.state, whole)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_chunk_and_a_checkpoint_that_time_out_mid_window_are_replayed(repository, kind):
    server = ServerProcess(repository)
    freeze, thaw = signal.SIGSTOP, signal.SIGCONT
    try:
        if kind == "sync":
            with Client(server.address, timeout=1.0) as client:
                stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=EVERY)
                results = [stream.feed(chunk) for chunk in PARTS[:6]]
                server.process.send_signal(freeze)
                with pytest.raises(DeadlineExceededError, match="no answer within 1 s"):
                    stream.feed(PARTS[6])
                pending = stream.pending  # the chunk without an answer is not kept: fed again below
                server.process.send_signal(thaw)
                results += [stream.feed(chunk) for chunk in PARTS[6:11]]  # replays 2 first
                server.process.send_signal(freeze)
                with pytest.raises(DeadlineExceededError):
                    stream.checkpoint()
                server.process.send_signal(thaw)
                results.append(stream.feed(PARTS[11]))
                stream.close()
                whole = client.infer(CHARS, X, version=1)
        else:

            async def main():
                async with AsyncClient(server.address, timeout=1.0) as client:
                    stream = client.stream(CHARS, version=1, bidi=True, outputs=OUTPUTS, state_every=EVERY)
                    results = [await stream.feed(chunk) for chunk in PARTS[:6]]
                    server.process.send_signal(freeze)
                    with pytest.raises(DeadlineExceededError, match="no answer within 1 s"):
                        await stream.feed(PARTS[6])
                    pending = stream.pending
                    server.process.send_signal(thaw)
                    results += [await stream.feed(chunk) for chunk in PARTS[6:11]]
                    server.process.send_signal(freeze)
                    with pytest.raises(DeadlineExceededError):
                        await stream.checkpoint()
                    server.process.send_signal(thaw)
                    results.append(await stream.feed(PARTS[11]))
                    await stream.close()
                    return stream, results, pending, await client.infer(CHARS, X, version=1)

            stream, results, pending, whole = asyncio.run(main())
    finally:
        server.process.send_signal(thaw)
        assert server.terminate() == 0
    assert pending == 2 and stream.pending == 0
    assert_like_one_call(results, stream.state, whole)
