"""AsyncStream: Stream for asyncio (client/stream.py says how streams carry their state)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .carry import Carry
from .errors import ServerError, UnavailableError, from_rpc_error
from .messages import InferResult, batch_major, time_major
from .state import State
from .stream import CLOSE_SECONDS, RESUMABLE, Broken, CallStatus, timed_out

T = TypeVar("T")


class _AsyncSender(Protocol):
    stub: Any
    timeout: float | None
    metadata: Any

    def stream_call(self, *requests: Any) -> Any: ...

    def infer(
        self,
        model: str,
        input: Any,
        state: State | None,
        lengths: Any,
        version: int,
        outputs: Sequence[str] | None,
    ) -> Awaitable[InferResult]: ...


async def _finish(call: Any) -> None:
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass


class AsyncStream(Carry):
    def __init__(
        self,
        client: _AsyncSender,
        model: str,
        version: int = 0,
        state: State | None = None,
        bidi: bool = False,
        outputs: Sequence[str] | None = None,
        state_every: int = 1,
        time_major: bool = False,
    ):
        super().__init__(model, version, state, bidi, outputs, state_every, time_major)
        self._client = client
        self._call: Any = None

    async def feed(self, chunk: Any, lengths: Any = None) -> InferResult:
        if self.time_major:  # as Stream.feed
            return time_major(await self._feed(batch_major(chunk), lengths))
        return await self._feed(chunk, lengths)

    async def _feed(self, chunk: Any, lengths: Any) -> InferResult:
        if not self.bidi:  # through infer: a coalescing client gathers it with other streams' chunks
            answer = self._client.infer(self.model, chunk, self._state, lengths, self.version, self.outputs)
            return self._keep(await answer)
        request = self._request(chunk, lengths)
        return self._take(request, await self._resuming(lambda: self._send(request)))

    async def checkpoint(self) -> State | None:
        if self._window.kept:
            await self._resuming(self._settle)
        return self._state

    async def _settle(self) -> None:
        if self._call is None:
            await self._send(None)
        else:
            self._settled(await self._exchange(self._window.checkpoint(self.version)))

    async def _resuming(self, run: Callable[[], Awaitable[T]]) -> T:
        try:
            return await run()
        except Broken:
            pass
        try:
            return await run()
        except Broken as broken:
            raise broken.error from None

    async def _send(self, request: pb.InferRequest | None) -> Any:
        if self._call is None:
            self._call = self._client.stream_call()
            self._fresh = True
            while self._window.kept:
                self._replayed(await self._exchange(self._window.replay(self.version)))
        return None if request is None else await self._exchange(request)

    async def _exchange(self, request: pb.InferRequest) -> InferResult:
        call = self._call
        try:
            response = await asyncio.wait_for(_write_read(call, self._stamp(request)), self._client.timeout)
        except asyncio.TimeoutError:
            self._drop()
            raise timed_out(self._client.timeout) from None
        except _LostWrite:
            self._drop()
            raise Broken(UnavailableError(grpc.StatusCode.UNAVAILABLE, _LostWrite.details)) from None
        except (grpc.RpcError, asyncio.InvalidStateError):
            # InvalidStateError: the server had already ended the call (idle, or stopping) when
            # this request was written; its status says why.
            self._drop()
            code = await call.code()
            error = from_rpc_error(CallStatus(code, await call.details()))
            raise (Broken(error) if code in RESUMABLE else error) from None
        if response is grpc.aio.EOF:
            self._drop()
            raise ServerError(grpc.StatusCode.UNKNOWN, "the server ended the stream")
        return InferResult.from_proto(response)

    def fork(self) -> AsyncStream:
        self._refuse_pending("fork()")
        return AsyncStream(self._client, **self._settings())

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._call = None

    async def close(self) -> None:
        try:
            await self.checkpoint()
        finally:
            await self._end_call()

    async def _end_call(self) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        try:
            await asyncio.wait_for(_finish(call), CLOSE_SECONDS)
        except (asyncio.TimeoutError, grpc.RpcError):
            call.cancel()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, error_type: object, *exc_info: object) -> None:
        await (self._end_call() if error_type is not None else self.close())


class _LostWrite(Exception):
    """grpc.aio reports a write onto a call whose connection is gone (a replica killed) as INTERNAL,
    "Internal error from Core", hiding the status the call ended with (grpc/grpc#36066): the call
    was lost, not refused, so a new call may get past it."""

    details = "the stream's connection was lost while sending a chunk"


async def _write_read(call: Any, request: pb.InferRequest) -> Any:
    try:
        await call.write(request)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.INTERNAL:
            raise _LostWrite from error
        raise
    return await call.read()
