"""Stream / AsyncStream: feed a long sequence chunk by chunk; the state is carried for you.

Unary mode (the default) sends the state with every chunk, so each chunk can land on any replica.
Bidi mode keeps one StreamInfer call open and lets the server hold the state between chunks; every
response still carries it, so when the call breaks the next chunk opens a new call from that state.
In both modes the client's timeout bounds each chunk: a bidi chunk with no answer in time closes the
call (DeadlineExceededError) and the next feed opens a new one from the state the client holds.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import grpc

from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import DeadlineExceededError, ServerError, from_rpc_error
from .messages import InferResult, infer_request
from .state import State


class _Sender(Protocol):
    """What a Stream needs of its client (Client is one): no import of the client, so no cycle."""

    stub: Any
    timeout: float | None
    metadata: Any

    def send(self, request: pb.InferRequest) -> InferResult: ...


class _AsyncSender(Protocol):
    stub: Any
    timeout: float | None
    metadata: Any

    def infer(
        self,
        model: str,
        input: Any,
        state: State | None,
        lengths: Any,
        version: int,
        outputs: Sequence[str] | None,
    ) -> Awaitable[InferResult]: ...


# A stream ends by half-closing its call, so the server finishes it with OK; cancelling it instead
# leaks a little memory in grpc.aio servers (~120 bytes a stream, grpc/grpc#43360) and counts as
# CANCELLED. Cancelled after all if the server does not end the call within this long.
_CLOSE_SECONDS = 1.0

# A call the server ended (idle, stopping; or cancelled by a stopping server's gRPC) is reopened once,
# from the state the stream holds. The client's own timeout is told apart before this is asked.
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


async def _finish(call: Any) -> None:
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass


class _Status(grpc.RpcError):
    """A finished call's status, in the shape from_rpc_error reads."""

    def __init__(self, code: grpc.StatusCode, details: str | None):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details


class _StreamBase:
    def __init__(
        self, model: str, version: int, state: State | None, bidi: bool, outputs: Sequence[str] | None
    ):
        self.model = model
        self.version = version  # 0 until the first answer pins the version that made the state
        self._state = state
        self.bidi = bidi
        # The state always comes back: the stream carries it (and resumes a broken call from it).
        self.outputs = None if outputs is None else [*dict.fromkeys([*outputs, "state"])]

    @property
    def state(self) -> State | None:
        """The state after the last chunk (None before the first): yours to save, restore or fork."""
        return self._state

    def save(self) -> bytes:
        """The current state as bytes; `client.stream(model, state=State.from_bytes(data))` resumes it."""
        if self._state is None:
            raise ValueError("nothing to save: no chunk has been fed yet")
        return self._state.to_bytes()

    def _request(self, chunk: Any, lengths: Any, send_state: bool):
        state = self._state if send_state else None
        return infer_request(self.model, chunk, state, lengths, self.version, self.outputs)

    @staticmethod
    def _timed_out(timeout: float | None) -> DeadlineExceededError:
        return DeadlineExceededError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"no answer within {timeout:g} s; the stream's call was closed and the next feed opens a "
            "new one from the last state",
        )

    def _keep(self, result: InferResult) -> InferResult:
        self._state, self.version = result.state, result.version
        return result


class Stream(_StreamBase):
    def __init__(
        self,
        client: _Sender,
        model: str,
        version: int = 0,
        state: State | None = None,
        bidi: bool = False,
        outputs: Sequence[str] | None = None,
    ):
        super().__init__(model, version, state, bidi, outputs)
        self._client = client
        self._requests: queue.SimpleQueue | None = None
        self._responses: Any = None

    def feed(self, chunk: Any, lengths: Any = None) -> InferResult:
        """Run the next chunk, (batch, time, input_size), from the carried state; returns its result."""
        if not self.bidi:
            return self._keep(self._client.send(self._request(chunk, lengths, send_state=True)))
        for attempt in range(2):
            fresh = self._responses is None
            if fresh:
                self._requests = queue.SimpleQueue()
                self._responses = self._client.stub.StreamInfer(
                    iter(self._requests.get, None), metadata=self._client.metadata
                )
            assert self._requests is not None
            # Within one call the server holds the state; a new call starts from ours.
            self._requests.put(self._request(chunk, lengths, send_state=fresh))
            timeout, responses = self._client.timeout, self._responses
            # A call has no per-message deadline: a timer cancels it if this chunk's answer is late.
            timer = threading.Timer(timeout, responses.cancel) if timeout else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                return self._keep(InferResult.from_proto(next(responses)))
            except grpc.RpcError as error:
                self._drop()
                if timer is not None and timer.finished.is_set():
                    raise self._timed_out(timeout) from None
                if error.code() not in _RESUMABLE or attempt:
                    raise from_rpc_error(error) from None
            except StopIteration:
                self._drop()
                raise ServerError(grpc.StatusCode.UNKNOWN, "the server ended the stream") from None
            finally:
                if timer is not None:
                    timer.cancel()
        raise AssertionError("unreachable")

    def fork(self) -> Stream:
        """A second stream that continues from this one's state; the two then go their own ways."""
        return Stream(self._client, self.model, self.version, self._state, self.bidi, self.outputs)

    def _drop(self) -> None:
        """Forget a call that failed or timed out (cancelled, in case the server still holds it)."""
        if self._responses is not None:
            self._responses.cancel()
        self._requests, self._responses = None, None

    def close(self) -> None:
        """End the open StreamInfer call, if any (the state is kept)."""
        responses, requests = self._responses, self._requests
        self._requests, self._responses = None, None
        if responses is None or requests is None:
            return
        requests.put(None)  # no more requests: the server ends the call with OK
        timer = threading.Timer(_CLOSE_SECONDS, responses.cancel)  # unless it cannot say so promptly
        timer.daemon = True
        timer.start()
        try:
            for _ in responses:
                pass
        except grpc.RpcError:
            pass  # the call had already failed, or took too long to end
        finally:
            timer.cancel()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStream(_StreamBase):
    def __init__(
        self,
        client: _AsyncSender,
        model: str,
        version: int = 0,
        state: State | None = None,
        bidi: bool = False,
        outputs: Sequence[str] | None = None,
    ):
        super().__init__(model, version, state, bidi, outputs)
        self._client = client
        self._call: Any = None

    async def feed(self, chunk: Any, lengths: Any = None) -> InferResult:
        if not self.bidi:  # through infer: a coalescing client gathers it with other streams' chunks
            answer = self._client.infer(self.model, chunk, self._state, lengths, self.version, self.outputs)
            return self._keep(await answer)
        for attempt in range(2):
            fresh = self._call is None
            if fresh:
                self._call = self._client.stub.StreamInfer(metadata=self._client.metadata)
            call, request = self._call, self._request(chunk, lengths, send_state=fresh)
            try:
                response = await asyncio.wait_for(self._exchange(request), self._client.timeout)
            except asyncio.TimeoutError:
                self._drop()
                raise self._timed_out(self._client.timeout) from None
            except (grpc.RpcError, asyncio.InvalidStateError):
                # InvalidStateError: the server had already ended the call (idle, or stopping) when
                # this chunk was written; its status says why.
                self._drop()
                code = await call.code()
                if code not in _RESUMABLE or attempt:
                    raise from_rpc_error(_Status(code, await call.details())) from None
                continue
            if response is grpc.aio.EOF:
                self._drop()
                raise ServerError(grpc.StatusCode.UNKNOWN, "the server ended the stream")
            return self._keep(InferResult.from_proto(response))
        raise AssertionError("unreachable")

    async def _exchange(self, request) -> Any:
        await self._call.write(request)
        return await self._call.read()

    def fork(self) -> AsyncStream:
        return AsyncStream(self._client, self.model, self.version, self._state, self.bidi, self.outputs)

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._call = None

    async def close(self) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        try:
            await asyncio.wait_for(_finish(call), _CLOSE_SECONDS)
        except (asyncio.TimeoutError, grpc.RpcError):
            call.cancel()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
