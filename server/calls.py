"""The gRPC edge, for both protocols: bytes in, authentication and admission, status, bytes out.

Every method is registered with raw-bytes (de)serializers, so nothing gRPC would answer as UNKNOWN
happens outside this module:

    bytes ─parse─> request ─servicer─> response ─serialize─> bytes
      │ not that message: INVALID_ARGUMENT       an exception: errors.status_of's status (INTERNAL,
      │                                            logged with its traceback, for anything unexpected)
      │                                          the client went away: counted CANCELLED / DEADLINE_EXCEEDED

Each handler leaves the code its client saw on its `Call` (`call.code`), beside the model the servicer
found (`call.model`): call_metrics.py, which wraps every handler, counts it. A stream's flow control
is stream_flow.py's; refusals are logged, rate-limited, by logs.py.

A unary call's bytes stay reserved until its answer has been sent (gRPC's done callback). Calls are
counted under the code the client gets: the status we send, or CANCELLED / DEADLINE_EXCEEDED when
the client gives up first (one whose client gives up while the answer is already on its way counts
as answered: the server cannot see that race). A stream is driven with gRPC's reader/writer API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from . import stream_flow
from .admission import Admission, Call, OpenStream
from .auth import Tokens
from .call_metrics import CallMetrics
from .errors import InvalidArgument, ServingError, Unavailable, trailing_metadata
from .logs import RefusalLog
from .metrics import Metrics

log = logging.getLogger("lstmserve.server")


class Calls:
    """Turns servicers into gRPC handlers that share admission, error mapping and metrics."""

    def __init__(
        self, admission: Admission, metrics: Metrics, max_message_bytes: int, tokens: Tokens | None = None
    ):
        self.admission = admission
        self.tokens = tokens  # None: no authentication (--auth-tokens not given)
        self.counted = CallMetrics(metrics, admission)
        self.max_message_bytes = max_message_bytes
        self.refusals = RefusalLog()

    def register(self, server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
        """Serve every method of `service` from the servicer's method of the same name."""
        handlers = {}
        for method in service.methods:
            behaviour = getattr(servicer, method.name)
            parse = _parser(message_factory.GetMessageClass(method.input_type))
            if method.server_streaming:
                # Server-streaming (Generate) is served as a bidi stream whose client sends one
                # request: the same wire, and the same admission, flow control and cancellation.
                answers = self.counted.answers(method.name, behaviour)
                handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                    self.counted.stream(method.name, self._stream(method.name, parse, answers))
                )
            elif not method.client_streaming and not method.server_streaming:
                # Registered as client-streaming so that the handler, not gRPC, receives the one
                # request: after admission, within --receive-seconds, a bounded number at once. The
                # wire is the same (one message each way), and so is the cost (measured).
                handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                    self.counted.unary(method.name, self._unary(method.name, parse, behaviour))
                )
            else:
                raise TypeError(f"{method.full_name}: client-streaming methods are not served")
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
        server.add_registered_method_handlers(service.full_name, handlers)

    def _unary(self, name: str, parse: Callable[[bytes], Message], behaviour) -> Callable:
        async def handle(_unused: Any, context: grpc.aio.ServicerContext, call: Call) -> bytes:
            try:
                if _past_deadline(context):
                    raise asyncio.CancelledError()  # _gone counts it DEADLINE_EXCEEDED
                self._authenticate(context, call)  # before anything is held for the call
                self.admission.start_call()
                # When the call's task ends, its answer has been sent (or the call has failed). Not
                # context.add_done_callback: gRPC keeps that callback in a reference cycle with the
                # call's state, which left every call to the cyclic GC (measurable at 64 streams).
                task = asyncio.current_task()
                assert task is not None  # gRPC runs each call in a task of its own
                task.add_done_callback(lambda _: self._unary_done(call))
                del task  # a frame holding its own task is a cycle once the task ends in an exception
                raw = await self._receive(context, call.client)
                call.deadline = _loop_deadline(context)  # the batcher refuses it if it cannot be met
                call.reserve(2 * len(raw))  # the bytes, and the message parsed from them
                answer = self._serialize(await behaviour(parse(raw), call))
                if _past_deadline(context):
                    raise asyncio.CancelledError()
                return answer
            except asyncio.CancelledError:
                call.code = _gone(context)
                raise
            except Exception as exc:
                if _past_deadline(context):  # its client has gone: no status for it either
                    call.code = "DEADLINE_EXCEEDED"
                    raise asyncio.CancelledError() from None
                call.code = self._refuse(context, name, exc)
            return b""  # not sent: the status set above goes instead

        return handle

    def _unary_done(self, call: Call) -> None:
        """An admitted call has ended, its answer sent or not: give back what it held."""
        call.release()
        self.admission.end_call()

    def _stream(self, name: str, parse: Callable[[bytes], Message], behaviour) -> Callable:
        async def handle(_unused: Any, context: grpc.aio.ServicerContext, call: Call) -> None:
            if _past_deadline(context):
                call.code = "DEADLINE_EXCEEDED"
                raise asyncio.CancelledError()
            try:
                self._authenticate(context, call)
                call.deadline = _loop_deadline(context)  # the stream's: none of its chunks runs after it
                stream = self.admission.open_stream()
            except ServingError as exc:
                call.code = self._refuse(context, name, exc)
                return
            # The stream counts, and holds its bytes, until its task ends: its last answer and its
            # status may wait long after this handler returns, on a client that does not read.
            stream.task.add_done_callback(lambda _: self._stream_done(stream, call))
            try:
                async for response in behaviour(stream_flow.requests(context, parse, call, stream), call):
                    data = self._serialize(response)
                    del response  # a slow reader holds us at write: hold the bytes only
                    await stream_flow.send(context, stream, call, data)
            except stream_flow.CLIENT_GONE:  # a read or write failed because the client cancelled the call
                call.code = _gone(context)
            except asyncio.CancelledError:
                if stream.ended_by is None:  # the client cancelled, or its deadline passed
                    call.code = _gone(context)
                    raise
                call.code = self._refuse(context, name, Unavailable(stream.ended_by))
            except Exception as exc:
                call.code = self._refuse(context, name, exc)

        return handle

    def _stream_done(self, stream: OpenStream, call: Call) -> None:
        self.admission.close_stream(stream)
        call.release()
        # The handler's frame holds the stream and the stream its task: a cycle, through the task's
        # exception, that kept a cancelled stream's last answer for the cyclic GC (~2 MB a stream).
        stream.task = None  # type: ignore[assignment]

    def _authenticate(self, context: grpc.aio.ServicerContext, call: Call) -> None:
        """The call's scope, and the client it counts against: its token, or else its connection."""
        if self.tokens is not None:
            call.scope = self.tokens.scope_of(context.invocation_metadata())
        call.client = call.scope.holder or context.peer()

    def _refuse(self, context: grpc.aio.ServicerContext, method: str, exc: Exception) -> str:
        """End the call with `exc`'s status once the handler returns; the code's name, for the metrics.

        NOTE: not context.abort(): gRPC keeps the exception it raises on the call, in a reference
        cycle with the handler's frames, and so with the request's bytes, until the cyclic GC runs;
        128 streams refused 1 MB requests and left 2 GB behind them."""
        code, details = self.refusals.refused(method, exc)
        context.set_code(code)
        context.set_details(details)
        if metadata := trailing_metadata(exc):  # the limit it hit, by name: clients read it as data
            context.set_trailing_metadata(metadata)
        return code.name

    async def _receive(self, context: grpc.aio.ServicerContext, client: str) -> bytes:
        """A unary call's request, received within --receive-seconds (waiting for a turn included)."""
        raw = await self.admission.receive(context.read, client)
        if raw is grpc.aio.EOF:
            # The client cancelled (or its deadline passed) before sending its request: gRPC's own
            # unary handling treats this the same way.
            raise asyncio.CancelledError()
        return raw

    def _serialize(self, response: Message) -> bytes:
        data = response.SerializeToString()
        if len(data) > self.max_message_bytes:
            # limits.py refuses requests whose answer would not fit: reaching this is a bug there.
            raise RuntimeError(f"answer of {len(data)} bytes is over the {self.max_message_bytes}-byte limit")
        return data


def _parser(message_type: type[Message]) -> Callable[[bytes], Message]:
    full_name = message_type.DESCRIPTOR.full_name

    def parse(raw: bytes) -> Message:
        try:
            return message_type.FromString(raw)
        except DecodeError:
            message = f"the request's {len(raw)} bytes are not a valid {full_name} message"
            raise InvalidArgument(message) from None

    return parse


def _past_deadline(context: grpc.aio.ServicerContext) -> bool:
    """Whether the call's deadline has passed (gRPC's own clock, which it clamps at 0): its client has
    given up, so the handler raises CancelledError and gRPC ends it without reading, answering or
    setting a status. Each of those is a batch that fails on such a call, and grpc.aio keeps every
    failed batch's operations (grpc/grpc#43360): a storm of short deadlines grew the server by 19 MB
    in 15 s; ended so, nothing is kept (tests/e2e/test_storm.py)."""
    return context.time_remaining() == 0


def _loop_deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline in the event loop's time, which the batcher compares; None: none."""
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


def _gone(context: grpc.aio.ServicerContext) -> str:
    """Why a call was cancelled under us: its deadline passed, or the client cancelled it."""
    remaining = context.time_remaining()
    # A client whose deadline passes cancels the call by its clock, which runs ahead of the server's
    # by however long the call took to reach it: a few ms idle, tens on a loaded machine (5 ms
    # counted some of a storm's calls CANCELLED that their clients saw DEADLINE_EXCEEDED).
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining < 0.05 else "CANCELLED"
