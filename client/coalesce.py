"""Coalescing: many streams of one model in one process sent as few calls (on by default in Client and
AsyncClient; coalesce=False turns it off).

The first chunk for a model version goes at once, as its own call, from the caller's own thread or
task: a lone stream never waits and pays nothing more. While that call is in flight, the chunks other
streams send for the same model version are gathered; when it returns, they go as one request (sent
by a task of their own in AsyncClient, a thread of the coalescer's in Client): one row per stream's
row, chunks padded to the longest with their own lengths in `sequence_lengths`, states stacked; the
answer is split back. The server's semantics (each row stops at its own length: outputs zero past it,
state frozen) make this exact.

Bounds: at most `max_rows` rows per call, and chunks only within 2x of each other's length (padding
never more than doubles a call). A gathered call the server refuses as a whole for a reason one row
could cause (INVALID_ARGUMENT, FAILED_PRECONDITION) is sent again row by row, so that each stream gets
its own answer or error; other failures (UNAVAILABLE after the retries, a deadline) reach every
stream in it. Sealed states cannot be stacked or split: once a server answers a gathered call with
one, every request to it goes alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import numpy as np

from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import LstmServeClientError, ServerError
from .gathering import MAX_ROWS, ChunkQueue, Gathering, Waiting, fail, merge, settle
from .messages import InferResult
from .state import State


class AsyncCoalescer(Gathering):
    """AsyncClient's: gathered calls are sent by a task of their own, so no caller's cancellation
    reaches the others' chunks."""

    def __init__(self, send: Callable[[pb.InferRequest], Awaitable[InferResult]], max_rows: int = MAX_ROWS):
        super().__init__(max_rows)
        self._send = send

    async def infer(
        self,
        model: str,
        x: np.ndarray,
        state: State | None,
        lengths: np.ndarray | None,
        version: int,
        outputs: tuple[str, ...],
    ) -> InferResult:
        """One stream's chunk: sent at once if its queue is idle, else gathered with others'."""
        waiting = Waiting(model, version, outputs, x, lengths, state)
        found = self._queue(waiting)
        if found is None:
            self.calls += 1
            return await self._send(waiting.request())  # alone: nothing to stack it with
        key, queue = found
        loop = asyncio.get_running_loop()
        if not self._leads(queue, waiting):
            waiting.answer = loop.create_future()
            return await waiting.answer
        try:
            self.calls += 1
            result = await self._send(waiting.request())
            return self._learn(key, result, waiting.rows, waiting.steps, again=False)
        finally:
            if self._release(key, queue):  # what gathered meanwhile goes in a task of its own
                loop.create_task(self._drain(key, queue))

    async def _drain(self, key: tuple, queue: ChunkQueue) -> None:
        """Send what waits, batch after batch, until nothing waits (the queue is busy meanwhile)."""
        try:
            while True:
                await self._run(self._take(key, queue))
                if not self._release(key, queue):
                    return
        except BaseException as exc:
            self._abandon(key, queue, exc)
            raise

    async def _run(self, batch: list[Waiting]) -> None:
        live = [waiting for waiting in batch if not waiting.answer.done()]  # a caller gone: skip it
        if not live:
            return
        self.calls += 1
        try:
            if len(live) == 1:
                settle(live[0], await self._send(live[0].request()))
            elif not self._answered(live, await self._send(merge(live))):
                await asyncio.gather(*(self._run([waiting]) for waiting in live))  # sealed: each alone
        except LstmServeClientError as exc:
            if self._refused(live, exc):
                await asyncio.gather(*(self._run([waiting]) for waiting in live))  # whose was it?
            else:
                fail(live, exc)
        except BaseException as exc:
            fail(live, exc)
            raise


class ThreadCoalescer(Gathering):
    """Client's: callers on many threads. Gathered calls are sent by the coalescer's own threads."""

    def __init__(self, send: Callable[[pb.InferRequest], InferResult], max_rows: int = MAX_ROWS):
        super().__init__(max_rows)
        self._send = send
        self._lock = threading.Lock()
        # One drain per busy queue (model version, outputs, ...) at a time: queues beyond the threads
        # would wait behind each other's calls. Threads start only as queues need them.
        self._senders = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lstmserve-coalesce")

    def infer(
        self,
        model: str,
        x: np.ndarray,
        state: State | None,
        lengths: np.ndarray | None,
        version: int,
        outputs: tuple[str, ...],
    ) -> InferResult:
        waiting = Waiting(model, version, outputs, x, lengths, state)
        with self._lock:
            found = self._queue(waiting)
            if found is not None and not self._leads(found[1], waiting):
                waiting.answer = Future()
        if waiting.answer is not None:
            return waiting.answer.result()  # the queue's calls bound the wait (the client's timeout)
        try:
            self.calls += 1
            result = self._send(waiting.request())
            return (
                result
                if found is None
                else self._learn(found[0], result, waiting.rows, waiting.steps, again=False)
            )
        finally:
            if found is not None:
                with self._lock:
                    if self._release(*found):
                        self._start_drain(*found)

    def _start_drain(self, key: tuple, queue: ChunkQueue) -> None:
        """What waits goes from a thread of the coalescer's (called with the lock held)."""
        try:
            self._senders.submit(self._drain, key, queue)
        except RuntimeError:  # the client was closed while they waited
            self._abandon(key, queue, ServerError(grpc.StatusCode.CANCELLED, "the client was closed"))

    def _drain(self, key: tuple, queue: ChunkQueue) -> None:
        try:
            while True:
                with self._lock:
                    batch = self._take(key, queue)
                self._run(batch)
                with self._lock:
                    if not self._release(key, queue):
                        return
        except BaseException as exc:
            with self._lock:
                self._abandon(key, queue, exc)
            raise

    def _run(self, batch: list[Waiting]) -> None:
        self.calls += 1
        try:
            if len(batch) == 1:
                settle(batch[0], self._send(batch[0].request()))
            elif not self._answered(batch, self._send(merge(batch))):
                for waiting in batch:  # sealed: each alone
                    self._run([waiting])
        except LstmServeClientError as exc:
            if self._refused(batch, exc):
                for waiting in batch:  # whose was it?
                    self._run([waiting])
            else:
                fail(batch, exc)
        except BaseException as exc:
            fail(batch, exc)
            raise

    def close(self) -> None:
        self._senders.shutdown(wait=False, cancel_futures=False)
