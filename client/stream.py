"""Stream / AsyncStream: feed a long sequence chunk by chunk; the state is carried for you.

Unary mode (the default) sends the state with every chunk, so each chunk can land on any replica.
Bidi mode keeps one StreamInfer call open and lets the server hold the state between chunks. By
default every response still carries it; with `state_every=k` only every k-th does, and the chunks
in between are kept (client/carry.py). When the call breaks, the next feed opens a new call from the
last state held, replays the kept chunks, then sends its own: the outputs are those of an unbroken
stream. `checkpoint()` fetches the state after the last chunk without feeding another (a zero-step
chunk on the open call); `close()` does so when chunks are pending. The client's timeout bounds each
chunk: a bidi chunk with no answer in time closes the call (DeadlineExceededError) and the next feed
opens a new one from the state the client holds.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .carry import Carry
from .errors import (
    DeadlineExceededError,
    LstmServeClientError,
    ServerError,
    from_rpc_error,
)
from .messages import InferResult, batch_major, time_major
from .state import State

T = TypeVar("T")


class _Sender(Protocol):
    """What a Stream needs of its client (Client is one): no import of the client, so no cycle."""

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
    ) -> InferResult: ...


# A stream ends by half-closing its call, so the server finishes it with OK; cancelling it instead
# leaks a little memory in grpc.aio servers (~120 bytes a stream, grpc/grpc#43360) and counts as
# CANCELLED. Cancelled after all if the server does not end the call within this long.
CLOSE_SECONDS = 1.0

# A call the server ended (idle, stopping; or cancelled by a stopping server's gRPC) is reopened once,
# from the state the stream holds. The client's own timeout is told apart before this is asked.
RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class CallStatus(grpc.RpcError):
    """A finished call's status, in the shape from_rpc_error reads."""

    def __init__(self, code: grpc.StatusCode, details: str | None):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details


class Broken(Exception):
    """The server ended the call in a way a new call may get past (RESUMABLE)."""

    def __init__(self, error: LstmServeClientError):
        super().__init__(str(error))
        self.error = error


class Stream(Carry):
    def __init__(
        self,
        client: _Sender,
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
        self._requests: queue.SimpleQueue | None = None
        self._responses: Any = None

    def feed(self, chunk: Any, lengths: Any = None) -> InferResult:
        """Run the next chunk, (batch, time, input_size), from the carried state; returns its result
        (its `state` is None on the chunks that did not ask for it: state_every). With time_major,
        the chunk is (time, batch, input_size) and the result time first."""
        if self.time_major:
            return time_major(self._feed(batch_major(chunk), lengths))
        return self._feed(chunk, lengths)

    def _feed(self, chunk: Any, lengths: Any) -> InferResult:
        if not self.bidi:  # through infer: a coalescing client gathers it with other streams' chunks
            return self._keep(
                self._client.infer(self.model, chunk, self._state, lengths, self.version, self.outputs)
            )
        request = self._request(chunk, lengths)
        return self._take(request, self._resuming(lambda: self._send(request)))

    def checkpoint(self) -> State | None:
        """The state after every chunk fed so far. With chunks pending it is asked of the server: a
        zero-step chunk on the open call, or, if none is open, a replay of the kept chunks."""
        if self._window.kept:
            self._resuming(self._settle)
        return self._state

    def _settle(self) -> None:
        if self._responses is None:
            self._send(None)  # the replay asks for the state of each chunk
        else:
            self._settled(self._exchange(self._window.checkpoint(self.version)))

    def _resuming(self, run: Callable[[], T]) -> T:
        """run(), and once more on a new call if the server ended this one (idle, stopping)."""
        try:
            return run()
        except Broken:
            pass
        try:
            return run()
        except Broken as broken:
            raise broken.error from None

    def _send(self, request: pb.InferRequest | None) -> Any:
        """Send request on the open call; a new call first replays the kept chunks from the state."""
        if self._responses is None:
            self._requests = queue.SimpleQueue()
            self._responses = self._client.stream_call(iter(self._requests.get, None))
            self._fresh = True
            while self._window.kept:
                self._replayed(self._exchange(self._window.replay(self.version)))
        return None if request is None else self._exchange(request)

    def _exchange(self, request: pb.InferRequest) -> InferResult:
        """One request on the open call, and its answer within the client's timeout."""
        assert self._requests is not None
        timeout, responses = self._client.timeout, self._responses
        # A call has no per-message deadline: a timer cancels it if this answer is late.
        timer = threading.Timer(timeout, responses.cancel) if timeout else None
        try:
            self._requests.put(self._stamp(request))
            if timer is not None:
                timer.daemon = True
                timer.start()
            return InferResult.from_proto(next(responses))
        except grpc.RpcError as error:
            self._drop()
            if timer is not None and timer.finished.is_set():
                raise timed_out(timeout) from None
            if error.code() in RESUMABLE:
                raise Broken(from_rpc_error(error)) from None
            raise from_rpc_error(error) from None
        except StopIteration:
            self._drop()
            raise ServerError(grpc.StatusCode.UNKNOWN, "the server ended the stream") from None
        except BaseException:
            # NOTE: interrupted (KeyboardInterrupt, a signal handler's exception) with this answer
            # unread: left open, the call gave the next feed this chunk's answer. A new call resumes
            # from the state held instead, replaying the kept chunks.
            self._drop()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def fork(self) -> Stream:
        """A second stream that continues from this one's state; the two then go their own ways."""
        self._refuse_pending("fork()")
        return Stream(self._client, **self._settings())

    def _drop(self) -> None:
        """Forget a call that failed or timed out (cancelled, in case the server still holds it)."""
        if self._responses is not None:
            self._responses.cancel()
        self._requests, self._responses = None, None

    def close(self) -> None:
        """Fetch the state if chunks are pending (so `state` is final), then end the open call. The
        stream may still be fed afterwards: the next chunk opens a new call."""
        try:
            self.checkpoint()
        finally:
            self._end_call()

    def _end_call(self) -> None:
        responses, requests = self._responses, self._requests
        self._requests, self._responses = None, None
        if responses is None or requests is None:
            return
        requests.put(None)  # no more requests: the server ends the call with OK
        timer = threading.Timer(CLOSE_SECONDS, responses.cancel)  # unless it cannot say so promptly
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

    def __exit__(self, error_type: object, *exc_info: object) -> None:
        # Leaving by an exception ends the call without asking the server for anything more.
        self._end_call() if error_type is not None else self.close()


def timed_out(timeout: float | None) -> DeadlineExceededError:
    return DeadlineExceededError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"no answer within {timeout:g} s; the stream's call was closed and the next feed opens a "
        "new one from the last state",
    )
