"""Whether a call may start, and what every call in flight holds: the server-wide bounds in one place.

    a call arrives ─> stopping?            UNAVAILABLE (retry on another replica)
                   ─> max_calls / max_streams open?   RESOURCE_EXHAUSTED (retry shortly)
                   ─> its bytes: the request and its answer, each counted twice (wire bytes and
                      decoded form), and a stream's held state, reserved from max_inflight_bytes;
                      RESOURCE_EXHAUSTED past it; given back when the answer has been sent

Open streams are tracked so that the watchdog can end the idle ones and a graceful stop can end the
rest once its grace is over, both with UNAVAILABLE: the client resumes from the last state it got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .auth import EVERY_MODEL
from .errors import DeadlineExceeded, ResourceExhausted, Unavailable
from .receive_turns import ReceiveTurns
from .settings import Settings

NO_MODEL = "-"  # the metrics' model label for a call refused before its model was found
STOPPING = "the server is shutting down: send this call to another replica"


@dataclass(eq=False)
class OpenStream:
    """One StreamInfer call: whether it waits on its client, and since when; why the server ended it."""

    task: asyncio.Task
    waiting_since: float = field(default_factory=time.monotonic)
    on_client: bool = True  # reading its next request or writing a response, not computing
    ended_by: str | None = None  # set when the server ends the stream: the UNAVAILABLE message

    def waits_on_client(self, waiting: bool) -> None:
        self.on_client, self.waiting_since = waiting, time.monotonic()


class Admission:
    def __init__(self, settings: Settings):
        self.max_calls = settings.max_calls
        self.max_streams = settings.max_streams
        self.max_bytes = settings.max_inflight_bytes
        self.idle_seconds = settings.stream_idle_seconds
        self.receive_seconds = settings.receive_seconds
        # Unary requests being received at once, each holding up to a message in gRPC: twice its
        # bytes (wire and decoded) per turn, shared fairly between clients (receive_turns.py).
        self.turns = ReceiveTurns(self.max_bytes // (2 * settings.max_message_bytes))
        self._receivers: dict[asyncio.Task, float] = {}  # unary calls receiving, since when
        self._late: set[asyncio.Task] = set()
        self.calls = 0  # unary calls in flight
        self.streams: dict[asyncio.Task, OpenStream] = {}
        self.bytes = 0  # reserved by calls in flight
        self.arrivals = 0  # calls and streams that asked to start, admitted or not
        self.stopping = False

    def start_call(self) -> None:
        self.arrivals += 1
        if self.stopping:
            raise Unavailable(STOPPING)
        if self.calls >= self.max_calls:
            raise ResourceExhausted(
                f"{self.calls} calls in flight (--max-calls {self.max_calls}); retry shortly",
                limit="max_calls",
            )
        self.calls += 1

    def end_call(self) -> None:
        self.calls -= 1

    def open_stream(self) -> OpenStream:
        self.arrivals += 1
        if self.stopping:
            raise Unavailable(STOPPING)
        if len(self.streams) >= self.max_streams:
            raise ResourceExhausted(
                f"{len(self.streams)} streams open (--max-streams {self.max_streams}), StreamInfer and "
                "Generate calls alike; retry shortly, or send StreamInfer's chunks as unary Infer calls",
                limit="max_streams",
            )
        task = asyncio.current_task()
        assert task is not None  # gRPC runs each call in a task of its own
        self.streams[task] = stream = OpenStream(task)
        return stream

    def close_stream(self, stream: OpenStream) -> None:
        self.streams.pop(stream.task, None)

    def reserve(self, nbytes: int) -> None:
        if self.bytes + nbytes > self.max_bytes:
            raise ResourceExhausted(
                f"the calls in flight hold {self.bytes >> 20} MiB (--max-inflight-bytes "
                f"{self.max_bytes >> 20} MiB) and this one needs {max(nbytes >> 20, 1)} MiB more; "
                "retry shortly",
                limit="max_inflight_bytes",
            )
        self.bytes += nbytes

    def release(self, nbytes: int) -> None:
        self.bytes -= nbytes

    async def receive(self, read: Callable[[], Awaitable[Any]], client: str) -> Any:
        """`read()`, in one of `client`'s turns, within receive_seconds in all (the wait included).

        NOTE: a sweep (end_late_receives, on the watchdog's tick) rather than a timer per call: this
        runs for every unary call."""
        task = asyncio.current_task()
        assert task is not None
        self._receivers[task] = time.monotonic()
        turn = False
        try:
            await self.turns.acquire(client)
            turn = True
            try:
                return await read()
            finally:
                self.turns.release(client)
        except asyncio.CancelledError:
            if task in self._late:
                # Say whose fault it was: the client's slow request, or other calls holding the turns.
                raise DeadlineExceeded(
                    f"the request did not arrive within {self.receive_seconds:g} s (--receive-seconds)"
                    if turn
                    else f"no receive turn came free within {self.receive_seconds:g} s (--receive-seconds):"
                    " other calls held them all; retry, or see docs/limits.md#receiving-requests",
                    limit="receive_seconds",
                ) from None
            raise
        finally:
            del self._receivers[task]
            self._late.discard(task)

    def end_late_receives(self) -> int:
        """Cancel the unary calls whose request has not arrived within receive_seconds."""
        late = time.monotonic() - self.receive_seconds
        stuck = [task for task, since in self._receivers.items() if since < late and task not in self._late]
        for task in stuck:
            self._late.add(task)
            task.cancel()
        return len(stuck)

    @property
    def busy(self) -> bool:
        return bool(self.calls or self.streams)

    def end_idle_streams(self) -> int:
        """End every stream that has waited on its client longer than the idle timeout; and drop one
        whose end could not reach its client in another such while (it reads nothing: its last
        answers and status stay queued in gRPC until the call is cancelled)."""
        now, ended = time.monotonic(), 0
        for stream in list(self.streams.values()):
            if now - stream.waiting_since <= self.idle_seconds or not stream.on_client:
                continue
            if stream.ended_by is None:
                self._end(
                    stream,
                    f"stream idle for over {self.idle_seconds:g} s (--stream-idle-seconds): it neither sent "
                    "a request nor read a response; open a new one from the last state",
                )
                ended += 1
            else:
                stream.task.cancel()
        return ended

    async def drain(self, grace: float) -> None:
        """Refuse new calls; let those in flight finish, and streams go on, for up to `grace` seconds;
        then end the streams still open with UNAVAILABLE."""
        self.stopping = True
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for stream in list(self.streams.values()):
            self._end(stream, STOPPING + " (resume the stream there from the last state)")
        while self.streams and time.monotonic() < deadline + 1.0:  # their UNAVAILABLE goes out
            await asyncio.sleep(0.01)

    @staticmethod
    def _end(stream: OpenStream, reason: str) -> None:
        stream.ended_by = reason
        stream.waits_on_client(True)  # from now on, for its status to be taken
        stream.task.cancel()  # the stream's handler turns this into UNAVAILABLE with the reason


class Call:
    """One call's share of the server: what the servicer reserves for it, given back when it ends."""

    __slots__ = (
        "admission",
        "held",
        "state_bytes",
        "model",
        "scope",
        "client",
        "deadline",
        "code",
        "received_at",
    )

    def __init__(self, admission: Admission):
        self.admission = admission
        self.model = NO_MODEL  # NAME:VERSION once the servicer has found the model (the metrics' label)
        self.scope = EVERY_MODEL  # the models its token may call (every model without --auth-tokens)
        self.client = ""  # its token, or else its connection (gRPC's peer): what fair shares count
        self.deadline: float | None = None  # loop time when its client gives up; None: never
        self.held = 0  # bytes reserved for the message in hand (a unary call: the whole call)
        self.state_bytes = 0  # a stream's held state, kept between its messages
        self.code = "OK"  # the status its client saw (or CANCELLED / DEADLINE_EXCEEDED): the metrics'
        self.received_at = 0.0  # perf_counter when a stream's message in hand arrived (its latency)

    def reserve(self, nbytes: int) -> None:
        self.admission.reserve(nbytes)
        self.held += nbytes

    def count(self, nbytes: int) -> None:
        """Bytes the call holds beyond its reservation, counted but not checked against the limit:
        an answer already made, whose size was checked before it was computed (the HTTP edge)."""
        self.admission.bytes += nbytes
        self.held += nbytes

    def hold_state(self, nbytes: int) -> None:
        """A stream now holds a state of `nbytes` between messages, replacing what it held. Not
        checked against the limit: it was admitted as part of the answer it came with."""
        self.admission.bytes += nbytes - self.state_bytes
        self.state_bytes = nbytes

    def release_message(self) -> None:
        self.admission.release(self.held)
        self.held = 0

    def release(self) -> None:
        self.release_message()
        self.admission.release(self.state_bytes)
        self.state_bytes = 0
