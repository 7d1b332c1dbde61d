"""A stream's flow control: the next request is read only when the servicer asks for it, and the next
answer is made only once the transport has taken the last, so a client that stops reading stops its
stream rather than piling answers up in the server. While it waits on its client the stream says so
(`OpenStream.waits_on_client`): the watchdog ends streams idle on their client, never those computing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from time import perf_counter

import grpc
from google.protobuf.message import Message
from grpc._cython import cygrpc

from .admission import Call, OpenStream

# gRPC raises this from a stream's read or write when its client has cancelled the call; the
# cancellation itself reaches the handler a moment later, if at all.
CLIENT_GONE = cygrpc.ExecuteBatchError


async def requests(
    context: grpc.aio.ServicerContext, parse: Callable[[bytes], Message], call: Call, stream: OpenStream
) -> AsyncIterator[Message]:
    """A stream's requests, one at a time, each reserved (its bytes and parsed form) while in hand."""
    while True:
        stream.waits_on_client(True)
        raw = await context.read()
        stream.waits_on_client(False)
        call.received_at = perf_counter()
        if raw is grpc.aio.EOF:
            return
        call.reserve(2 * len(raw))
        yield parse(raw)


async def send(context: grpc.aio.ServicerContext, stream: OpenStream, call: Call, data: bytes) -> None:
    """One answer, returning once the transport took it; then the message in hand is given back."""
    stream.waits_on_client(True)
    await context.write(data)
    call.release_message()
