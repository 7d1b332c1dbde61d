"""Every call counted once, under the code its client saw, with its latency: wrappers around the
gRPC edge's handlers (server/calls.py), which create each call's `Call` and read back its model
label and `code` once the handler is done.

A unary call counts when its handler ends, with the time since it arrived. A stream counts each
answer as OK when the transport has taken it, with the time since its request arrived; and, if it
did not end OK, once more under the code it ended with (without a latency: a stream has no one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any

import grpc
from google.protobuf.message import Message

from .admission import Admission, Call
from .metrics import Metrics

Handler = Callable[[Any, grpc.aio.ServicerContext, Call], Awaitable[Any]]
Behaviour = Callable[[Any, Call], AsyncIterator[Message]]


class CallMetrics:
    def __init__(self, metrics: Metrics, admission: Admission):
        self.metrics = metrics
        self.admission = admission

    def unary(self, method: str, handle: Handler) -> Callable:
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call, started = Call(self.admission), perf_counter()
            try:
                return await handle(request, context, call)
            finally:
                self.metrics.answered(call.model, method, call.code, perf_counter() - started)

        return counted

    def stream(self, method: str, handle: Handler) -> Callable:
        async def counted(requests: Any, context: grpc.aio.ServicerContext) -> None:
            call = Call(self.admission)
            try:
                await handle(requests, context, call)
            finally:
                if call.code != "OK":  # each answer was counted as it went (answers, below)
                    self.metrics.answered(call.model, method, call.code)

        return counted

    def answers(self, method: str, behaviour: Behaviour) -> Behaviour:
        """The servicer's stream of answers, each counted once the edge has sent it (it asks for the
        next only then)."""

        async def counted(requests: Any, call: Call) -> AsyncIterator[Message]:
            answers = aiter(behaviour(requests, call))
            while True:
                try:
                    # Yielded straight from anext: this wrapper holds no answer while it is written.
                    yield await anext(answers)
                except StopAsyncIteration:
                    return
                self.metrics.answered(call.model, method, "OK", perf_counter() - call.received_at)

        return counted
