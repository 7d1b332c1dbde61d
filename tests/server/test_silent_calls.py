"""Unary calls that send their headers and never their message (a hung client, a dead link) keep
waiting only their own connection's later calls, never another's (issue 23, finding 2).

Default settings: 16 receive turns (128 MiB / 2 x 4 MiB). Before turns were shared per client, 16
such calls held all of them and every other client's unary call waited out --receive-seconds.
"""

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest

from lstmserve.client.messages import infer_request
from lstmserve.proto.inference import grpc_service_pb2 as kserve

from ..conftest import CHARS
from ..servers import ServerProcess

SILENT_CALLS = 64
X = np.random.default_rng(0).standard_normal((1, 4, 5)).astype(np.float32)


def v1_request() -> bytes:
    return infer_request(CHARS, X).SerializeToString()


def kserve_request() -> bytes:
    request = kserve.ModelInferRequest(model_name=CHARS)
    request.inputs.add(name="input", datatype="FP32", shape=X.shape)
    request.raw_input_contents.append(X.tobytes())
    return request.SerializeToString()


PROTOCOLS = {
    "lstmserve.v1": ("/lstmserve.v1.LSTMService/Infer", v1_request),
    "kserve": ("/inference.GRPCInferenceService/ModelInfer", kserve_request),
}


class SilentCalls:
    """`count` calls of `method` on one connection, opened and never sent a message, on a loop of
    their own; closed (cancelled) by close()."""

    def __init__(self, address: str, method: str, count: int):
        self.opened = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._run(address, method, count),)
        )
        self.stop: asyncio.Event | None = None
        self.thread.start()
        assert self.opened.wait(10)

    async def _run(self, address: str, method: str, count: int) -> None:
        self.stop = asyncio.Event()
        async with grpc.aio.insecure_channel(address) as channel:
            calls = [channel.stream_stream(method)() for _ in range(count)]  # headers go out, nothing more
            await asyncio.gather(*(call.wait_for_connection() for call in calls))
            self.opened.set()
            await self.stop.wait()
            for call in calls:
                call.cancel()

    def close(self) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_silent_calls_on_one_connection_leave_another_connection_answered_at_once(repository, protocol):
    method, request = PROTOCOLS[protocol]
    server = ServerProcess(repository, "--receive-seconds", "30")
    try:
        silent = SilentCalls(server.address, method, SILENT_CALLS)
        try:
            time.sleep(0.3)  # the server has taken them all, and they wait for their messages
            with grpc.insecure_channel(server.address) as channel:  # another connection
                call = channel.unary_unary(method)
                call(request(), timeout=10)  # connected, and the model warm
                took = []
                for _ in range(3):
                    started = time.monotonic()
                    call(request(), timeout=10)  # would wait out --receive-seconds, were it stalled
                    took.append(time.monotonic() - started)
        finally:
            silent.close()
    finally:
        assert server.terminate() == 0
    # The best of three: an answer takes a few ms here; a stalled one ~30 s (DEADLINE_EXCEEDED at 10).
    assert min(took) < 0.1, took
