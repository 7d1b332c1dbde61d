"""Batcher: merge concurrent requests for one model version into one onnxruntime run, exactly.

    requests, from Infer and StreamInfer alike, any chunk length
       │  a bounded queue per model version: past max_queue_rows, RESOURCE_EXHAUSTED at once
       ▼
    the leader (the first caller to find the lane idle) waits max_delay for more if the lane is busy
       │  (its last batch ended just now), then takes what is waiting, up to max_batch_rows,
       │  pads every chunk to the longest; sequence_lengths keeps each row to its own steps
       ▼
    onnxruntime: small runs on the event loop's thread, large ones on the executor
       │  rows and steps split back to each caller; leadership passes to the oldest waiting caller
       ▼
    while one batch runs, the next one gathers: batches grow with the load; a lone stream never waits

Exact because the LSTM stops each row at its own length (outputs zero and state frozen past it): a
row's answer does not depend on what it was batched with, to float32 round-off of the matrix kernels.
The servicer does not know this module exists: it awaits `run(runtime, feed)`.

NOTE: no worker tasks and no thread hop for small runs. Measured here, handing a one-step call to a
thread and back cost ~0.5 ms, fifteen times onnxruntime's own 35 us; so the caller's coroutine runs
small batches itself and only runs larger than `max_inline_steps` (rows x steps) leave the loop.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import Executor
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from lstmserve import contract

from .errors import ResourceExhausted
from .runtime import ModelRuntime

Feed = dict[str, np.ndarray]
_LEAD = object()  # a waiting caller's future resolves to this when it is to run the next batch
# A call that arrives this soon after the lane's last batch ended means calls are queuing up. A lone
# stream's next call comes a whole round trip later (~1 ms here) and so never waits.
_BUSY_WINDOW = 0.25e-3


@dataclass
class _Pending:
    feed: Feed
    rows: int
    time: int
    future: asyncio.Future
    queued_at: float  # loop time


class Observer:
    """What the batcher reports as it works; server/metrics.py turns it into Prometheus metrics."""

    def waited(self, runtime: ModelRuntime, seconds: float) -> None:
        """A request's time in the queue, until its batch started."""

    def ran(self, runtime: ModelRuntime, requests: int, seconds: float) -> None:
        """One onnxruntime run for `requests` requests."""

    def queued(self, runtime: ModelRuntime, rows: int) -> None:
        """Rows waiting now."""


class Batcher:
    def __init__(
        self,
        executor: Executor,
        max_batch_rows: int = 64,
        max_delay: float = 0.002,
        max_queue_rows: int = 1024,
        max_inline_steps: int = 256,
        observer: Observer | None = None,
    ):
        """max_batch_rows 0 turns batching off: each request runs alone (still bounded, in order)."""
        self.executor = executor
        self.max_batch_rows = max_batch_rows
        self.max_delay = max_delay
        self.max_queue_rows = max_queue_rows
        self.max_inline_steps = max_inline_steps
        self.observer = observer or Observer()
        self._lanes: dict[ModelRuntime, _Lane] = {}
        self.batches = 0  # onnxruntime runs so far
        self.requests = 0  # requests they answered (requests / batches: the mean batch, in requests)

    async def run(self, runtime: ModelRuntime, feed: Feed) -> dict[str, np.ndarray]:
        lane = self._lanes.get(runtime)
        if lane is None:
            lane = self._lanes[runtime] = _Lane(self, runtime)
        return await lane.submit(feed)

    def forget(self, runtime: ModelRuntime) -> None:
        """Drop an unloaded model's lane; a batch of it still running finishes on its own."""
        self._lanes.pop(runtime, None)


class _Lane:
    """One model version's queue; at most one batch of it runs at a time."""

    def __init__(self, batcher: Batcher, runtime: ModelRuntime):
        self.batcher = batcher
        self.runtime = runtime
        self.waiting: collections.deque[_Pending] = collections.deque()
        self.queued_rows = 0
        self.leading = False  # a caller is running (or gathering) a batch
        self.last_run = -1.0  # loop time when the last batch ended

    async def submit(self, feed: Feed) -> dict[str, np.ndarray]:
        rows, time = feed[contract.INPUT].shape[:2]
        limit = self.batcher.max_queue_rows
        if self.queued_rows + rows > limit:
            info = self.runtime.info
            raise ResourceExhausted(
                f"{info.name} v{info.version} has {self.queued_rows} rows queued (limit {limit}); "
                "retry shortly, or add replicas"
            )
        loop = asyncio.get_running_loop()
        idle = not self.leading and loop.time() - self.last_run >= _BUSY_WINDOW
        if idle and rows * time <= self.batcher.max_inline_steps:
            # Nothing queued and nothing to wait for: run it now, without the queue's machinery.
            started = perf_counter()
            outputs = self.runtime.run(feed)
            self._count(1, perf_counter() - started)
            return outputs
        item = _Pending(feed, rows, time, loop.create_future(), loop.time())
        self.waiting.append(item)
        self.queued_rows += rows
        self.batcher.observer.queued(self.runtime, self.queued_rows)
        if self.leading:
            outcome = await item.future
            if outcome is not _LEAD:
                return outcome
            item.future = loop.create_future()  # elected: still first in line, now to lead
        self.leading = True
        try:
            busy = loop.time() - self.last_run < _BUSY_WINDOW
            if busy and self.queued_rows < self.batcher.max_batch_rows:
                # Under load, wait for the next calls to join: gRPC hands a server its calls one
                # loop turn at a time, so without a wait batches stay at one call.
                await asyncio.sleep(self.batcher.max_delay)
        except asyncio.CancelledError:
            item.future.cancel()  # gone before its batch was taken: pass the lead on
            self._hand_over()
            raise
        batch = self._take()
        if self._inline(batch):
            try:
                self._deliver(batch, *self._merge_run_split(batch))
            except Exception as exc:  # onnxruntime failed: every caller in the batch hears of it
                self._fail(batch, exc)
            self._hand_over()
        else:
            # A long run leaves the loop's thread so the loop keeps serving; shielded, so that if
            # this caller goes away the others in its batch are still answered.
            offloaded = asyncio.get_running_loop().run_in_executor(
                self.batcher.executor, self._merge_run_split, batch
            )
            try:
                await asyncio.shield(offloaded)
            except asyncio.CancelledError:
                offloaded.add_done_callback(lambda done: self._after_offload(batch, done))
                raise
            except Exception:
                pass  # delivered to every caller just below
            self._after_offload(batch, offloaded)
        return item.future.result()

    def _inline(self, batch: list[_Pending]) -> bool:
        rows, time = sum(item.rows for item in batch), max(item.time for item in batch)
        return rows * time <= self.batcher.max_inline_steps

    def _merge_run_split(self, batch: list[_Pending]) -> tuple[list[dict[str, np.ndarray]], float]:
        """Each request's outputs, and the seconds onnxruntime took (this may run on a thread)."""
        feed = batch[0].feed if len(batch) == 1 else merge([item.feed for item in batch])
        started = perf_counter()
        outputs = self.runtime.run(feed)
        seconds = perf_counter() - started
        if len(batch) == 1:
            return [outputs], seconds
        return split(outputs, [(item.rows, item.time) for item in batch]), seconds

    def _after_offload(self, batch: list[_Pending], done: asyncio.Future) -> None:
        error = done.exception()
        if error is not None:
            self._fail(batch, error)
        else:
            self._deliver(batch, *done.result())
        self._hand_over()

    def _count(self, requests: int, seconds: float) -> None:
        self.last_run = asyncio.get_running_loop().time()
        self.batcher.batches += 1
        self.batcher.requests += requests
        self.batcher.observer.ran(self.runtime, requests, seconds)

    def _deliver(self, batch: list[_Pending], results: list[dict[str, np.ndarray]], seconds: float) -> None:
        self._count(len(batch), seconds)
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    def _hand_over(self) -> None:
        """Pass the lead to the oldest caller still waiting, or go idle."""
        while self.waiting:
            first = self.waiting[0]
            if not first.future.done():
                first.future.set_result(_LEAD)
                return
            self._drop_first()  # it went away (cancelled) while it waited
        self.leading = False

    def _drop_first(self) -> _Pending:
        item = self.waiting.popleft()
        self.queued_rows -= item.rows
        self.batcher.observer.queued(self.runtime, self.queued_rows)
        return item

    def _take(self) -> list[_Pending]:
        """Waiting requests, oldest first, while they fit in max_batch_rows (always at least one)."""
        batch: list[_Pending] = []
        rows = 0
        while self.waiting:
            item = self.waiting[0]
            if batch and rows + item.rows > self.batcher.max_batch_rows:
                break
            self._drop_first()
            if item.future.done() and batch:  # a caller that went away; the leader's own is replaced
                continue
            batch.append(item)
            rows += item.rows
        now = asyncio.get_running_loop().time()
        for item in batch:
            self.batcher.observer.waited(self.runtime, now - item.queued_at)
        return batch


def merge(feeds: list[Feed]) -> Feed:
    """Stack requests' rows into one feed, padding each chunk to the longest one."""
    time = max(feed[contract.INPUT].shape[1] for feed in feeds)
    rows = sum(feed[contract.INPUT].shape[0] for feed in feeds)
    features = feeds[0][contract.INPUT].shape[2]
    x = np.zeros((rows, time, features), np.float32)  # (batch, time, input_size)
    start = 0
    for feed in feeds:
        chunk = feed[contract.INPUT]
        x[start : start + chunk.shape[0], : chunk.shape[1]] = chunk
        start += chunk.shape[0]
    merged = {contract.INPUT: x}
    for name in feeds[0]:
        if name != contract.INPUT:  # sequence_lengths and the initial states: rows stack as they are
            merged[name] = np.concatenate([feed[name] for feed in feeds])
    return merged


def split(outputs: dict[str, np.ndarray], shapes: list[tuple[int, int]]) -> list[dict[str, np.ndarray]]:
    """Each request's rows back, with time-major outputs cut to its own chunk length."""
    results, start = [], 0
    for rows, time in shapes:
        part = {}
        for name, value in outputs.items():
            value = value[start : start + rows]
            # output and per-step logits have a time axis; states and classify_last logits do not.
            if name == contract.OUTPUT or (name == contract.LOGITS and value.ndim == 3):
                value = value[:, :time]
            part[name] = value
        results.append(part)
        start += rows
    return results
