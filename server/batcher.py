"""Batcher: merge concurrent requests for one model version into one onnxruntime run, exactly.

    requests from the data plane (Infer, StreamInfer, ModelInfer, each Generate step), any chunk length
       │  a bounded queue per model version: past max_queue_rows, RESOURCE_EXHAUSTED at once
       ▼
    the lane's worker task (started when work arrives at an idle lane, gone when the queue empties)
       │  if the lane is busy (its last batch ended just now), lets the calls reaching the server
       │  join while they keep coming (until 0.3 ms pass with none, at most max_delay); then takes
       │  the oldest request and those that fit with it: max_batch_rows, padded rows x steps within
       │  max_batch_row_steps, chunk lengths within 2x of each other
       ▼
    onnxruntime: small runs on the event loop's thread, large ones on the executor
       │  rows and steps split back to each caller's future
       ▼
    while one batch runs, the next one gathers: batches grow with the load; a lone stream never waits

Exact because the LSTM stops each row at its own length (outputs zero and state frozen past it): a
row's answer does not depend on what it was batched with, to float32 round-off of the matrix kernels.
The data plane (and a generation, step by step) awaits `run(runtime, feed)` and knows no more of it.

NOTE: no thread hop for small runs. Measured here, handing a one-step call to a thread and back cost
~0.5 ms, fifteen times onnxruntime's own 35 us; so a call that finds its lane idle runs at once in
its own coroutine, small batches run on the loop, and only runs larger than `max_inline_steps`
(rows x steps) leave it. The worker is a task, not the callers taking turns to lead: a turn handed
to a caller that was cancelled before it woke up wedged the lane for good.

NOTE: no fixed wait for company. Sleeping max_delay (2 ms) whenever calls queued made a few streams
pay it on every call (4 bidi streams: 1.5k chunks/s, p50 3 ms); stopping at the first loop turn that
brought no call made batches of unary calls too small at 64 streams (0.8x). It waits while calls
keep joining, and stops _GATHER_GAP after the last one.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from concurrent.futures import Executor
from dataclasses import dataclass
from time import monotonic, perf_counter

import numpy as np

from lstmserve import contract
from lstmserve.limits import DEFAULT_LIMITS
from lstmserve.rows import split_rows, stack_rows, within_spread

from .deadlines import LATE, RecentRuns
from .errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from .runtime import Feed, ModelRuntime

# A call that arrives this soon after the lane's last batch ended means calls are queuing up. A lone
# stream's next call comes a whole round trip later (~1 ms here) and so never waits.
_BUSY_WINDOW = 0.25e-3
# A gathering batch stops waiting for company when no call has joined for this long. Measured on
# lstm2x128, one-step chunks, against an older checkout's 2 ms sleep whenever calls queued
# (python -m lstmserve.benchmarks.ab): bidi at 4 streams 2.3x, at 16 1.7x; unary and KServe at 64
# streams 0.97-1.04x. Stopping at the first loop turn that brought no call, even only after batches
# of fewer than 3 or 8 requests, made unary and KServe batches at 64 streams too small (0.7-0.9x).
_GATHER_GAP = 0.3e-3


@dataclass(eq=False)  # compared by identity: a caller that goes away finds itself in the queue
class _Pending:
    feed: Feed
    rows: int
    time: int
    future: asyncio.Future
    queued_at: float  # loop time
    owner: object = None  # a caller that sends one run after another (a generation), or None
    deadline: float | None = None  # loop time past which its answer is of no use; None: none


class Observer:
    """What the batcher reports as it works; server/metrics.py turns it into Prometheus metrics."""

    def waited(self, runtime: ModelRuntime, seconds: float) -> None:
        """A request's time in the queue, until its batch started."""

    def ran(self, runtime: ModelRuntime, requests: int, rows: int, seconds: float) -> None:
        """One onnxruntime run for `requests` requests of `rows` rows in all."""

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
        max_batch_row_steps: int = DEFAULT_LIMITS.max_request_row_steps,
        observer: Observer | None = None,
    ):
        """max_batch_rows 0 turns batching off: each request runs alone (still bounded, in order)."""
        self.executor = executor
        self.max_batch_rows = max_batch_rows
        self.max_delay = max_delay
        self.max_queue_rows = max_queue_rows
        self.max_inline_steps = max_inline_steps
        self.max_batch_row_steps = max_batch_row_steps  # padded rows x steps of one merged run
        self.observer = observer or Observer()
        self._lanes: dict[ModelRuntime, _Lane] = {}
        self._forgotten: weakref.WeakSet[ModelRuntime] = weakref.WeakSet()
        self.batches = 0  # onnxruntime runs so far
        self.requests = 0  # requests they answered (requests / batches: the mean batch, in requests)

    async def run(
        self, runtime: ModelRuntime, feed: Feed, owner: object = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """One request's outputs, run alone or merged with others'. owner: a caller whose runs follow
        one another (a generation, step after step): its next run right after its own last one is
        not other calls queuing up, and waits for no company. deadline: the loop time past which the
        caller has given up; a request still waiting then is refused DEADLINE_EXCEEDED, not run."""
        lane = self._lanes.get(runtime)
        if lane is None:
            lane = _Lane(self, runtime)
            # An unloaded version still serves the streams that pinned it, each in a lane of its own
            # that goes with it: kept here, the lane would keep its onnxruntime session for good.
            if runtime not in self._forgotten:
                self._lanes[runtime] = lane
        return await lane.submit(feed, owner, deadline)

    def forget(self, runtime: ModelRuntime) -> None:
        """Drop an unloaded model's lane; what it still holds finishes on its own."""
        self._lanes.pop(runtime, None)
        self._forgotten.add(runtime)

    def stalled(self, seconds: float) -> list[ModelRuntime]:
        """Model versions whose waiting work has seen no batch end for over `seconds`."""
        return [runtime for runtime, lane in self._lanes.items() if lane.stalled(seconds)]


class _Lane:
    """One model version's queue, and the task that runs its batches while work waits (one at a time).

    Callers only enqueue and await their own future: a caller that goes away (cancelled, deadline)
    takes its rows out of the queue, or if its batch already runs, simply leaves its answer unread.
    No caller ever holds anything the others need, so no cancellation can wedge the lane.
    """

    def __init__(self, batcher: Batcher, runtime: ModelRuntime):
        self.batcher = batcher
        self.runtime = runtime
        self.waiting: collections.deque[_Pending] = collections.deque()
        self.queued_rows = 0
        self.worker: asyncio.Task | None = None  # runs batches while anything waits; None when idle
        self.last_run = -1.0  # loop time when the last batch ended
        self.last_alone: object = None  # the owner whose request the last batch held alone, if any
        self.progress_at = monotonic()  # when a batch last ended, or the lane last woke up
        self.runs = RecentRuns()  # how long its runs take: the bar a call's deadline must clear

    async def submit(
        self, feed: Feed, owner: object = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        rows, steps = feed[contract.INPUT].shape[:2]
        limit = self.batcher.max_queue_rows
        info = self.runtime.info
        if rows > limit:  # settings keep max_request_rows within it; this guards direct callers
            raise InvalidArgument(f"{rows} rows can never fit {info.name} v{info.version}'s queue of {limit}")
        if self.queued_rows + rows > limit:
            raise ResourceExhausted(
                f"{info.name} v{info.version} has {self.queued_rows} rows queued (--max-queue-rows "
                f"{limit}); retry shortly, or add replicas",
                limit="max_queue_rows",
            )
        loop = asyncio.get_running_loop()
        if deadline is not None:
            self.runs.check(deadline - loop.time(), rows * steps, self.runtime.label)
        # A run that follows the same owner's run alone is that caller's next step, not company.
        following = owner is not None and owner is self.last_alone
        busy = loop.time() - self.last_run < _BUSY_WINDOW and not following
        if self.worker is None and not busy and rows * steps <= self.batcher.max_inline_steps:
            # Nothing queued and nothing to wait for: run it now, without the queue's machinery.
            started = perf_counter()
            try:
                return self.runtime.run(feed)
            finally:  # a failed run counts too: it was a run, and it makes the lane busy
                self._count(1, rows, rows * steps, perf_counter() - started, owner)
        item = _Pending(feed, rows, steps, loop.create_future(), loop.time(), owner, deadline)
        self.waiting.append(item)
        self.queued_rows += rows
        self.batcher.observer.queued(self.runtime, self.queued_rows)
        if self.worker is None:
            self.progress_at = monotonic()
            # Busy is judged here, on arrival: by the time the new task runs the window may be past.
            work = self._work(gather=busy)
            self.worker = loop.create_task(work, name=f"batcher {info.name} v{info.version}")
        try:
            return await item.future
        except asyncio.CancelledError:
            if item in self.waiting:  # not taken yet: its rows leave the queue with it
                self.waiting.remove(item)
                self._dequeued(item)
            raise

    async def _work(self, gather: bool) -> None:
        """Run batches until the queue is empty; `gather`: calls are queuing up (they came while the
        lane had just run), so let the calls still arriving join before taking a batch (_gather:
        until none has joined for _GATHER_GAP, at most max_delay)."""
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                if gather:
                    await self._gather(loop)
                batch = self._take()
                if not batch:
                    continue
                started = perf_counter()
                try:
                    if self._inline(batch):
                        results = self._merge_run_split(batch)
                    else:  # a long run leaves the loop's thread, so the loop keeps serving
                        results = await loop.run_in_executor(
                            self.batcher.executor, self._merge_run_split, batch
                        )
                except Exception as exc:  # onnxruntime failed: every caller in the batch hears of it
                    self._count(len(batch), _rows(batch), _row_steps(batch), perf_counter() - started)
                    self._fail(batch, exc)
                else:
                    self._deliver(batch, *results)
                self.progress_at = monotonic()
                gather = True  # whatever waits now arrived while this batch ran
        except BaseException as exc:  # cancelled with the loop, or a bug here: nobody may wait forever
            self._fail(list(self.waiting), exc if isinstance(exc, Exception) else asyncio.CancelledError())
            self.waiting.clear()
            self.queued_rows = 0
            raise
        finally:
            self.worker = None

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let the calls reaching the server join, a loop turn at a time (gRPC hands them over one per
        turn), until _GATHER_GAP passes with none, the batch is full, or max_delay has passed."""
        deadline = loop.time() + self.batcher.max_delay
        count, arrived = len(self.waiting), loop.time()
        while self.queued_rows < self.batcher.max_batch_rows:
            await asyncio.sleep(0)
            now = loop.time()
            if len(self.waiting) != count:
                count, arrived = len(self.waiting), now
            elif now - arrived >= _GATHER_GAP or now >= deadline:
                return

    def stalled(self, seconds: float) -> bool:
        """Work has waited, with no batch ending, for over `seconds`."""
        return self.worker is not None and monotonic() - self.progress_at > seconds

    def _inline(self, batch: list[_Pending]) -> bool:
        return _row_steps(batch) <= self.batcher.max_inline_steps

    def _merge_run_split(self, batch: list[_Pending]) -> tuple[list[dict[str, np.ndarray]], float]:
        """Each request's outputs, and the seconds onnxruntime took (this may run on a thread)."""
        feed = batch[0].feed if len(batch) == 1 else merge([item.feed for item in batch])
        started = perf_counter()
        outputs = self.runtime.run(feed)
        seconds = perf_counter() - started
        if len(batch) == 1:
            return [outputs], seconds
        return split(outputs, [(item.rows, item.time) for item in batch]), seconds

    def _count(self, requests: int, rows: int, row_steps: int, seconds: float, alone: object = None) -> None:
        self.last_run = asyncio.get_running_loop().time()
        self.runs.ran(row_steps, seconds)
        self.last_alone = alone
        self.batcher.batches += 1
        self.batcher.requests += requests
        self.batcher.observer.ran(self.runtime, requests, rows, seconds)

    def _deliver(self, batch: list[_Pending], results: list[dict[str, np.ndarray]], seconds: float) -> None:
        alone = batch[0].owner if len(batch) == 1 else None
        self._count(len(batch), _rows(batch), _row_steps(batch), seconds, alone)
        for item, result in zip(batch, results):
            if not item.future.done():  # done: its caller went away
                item.future.set_result(result)

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    def _dequeued(self, item: _Pending) -> None:
        self.queued_rows -= item.rows
        self.batcher.observer.queued(self.runtime, self.queued_rows)

    def _take(self) -> list[_Pending]:
        """The oldest waiting request and those that may join it, oldest first.

        A request joins while the batch stays within max_batch_rows and, padded to its longest
        chunk, within max_batch_row_steps, and while its chunks differ in length by at most 2x: a
        one-step call never waits out a long one's steps, and padding never more than doubles a run.
        """
        batch: list[_Pending] = []
        kept: collections.deque[_Pending] = collections.deque()
        rows = longest = shortest = 0
        max_rows = self.batcher.max_batch_rows
        now = asyncio.get_running_loop().time()
        while self.waiting:
            item = self.waiting.popleft()
            if item.future.done():  # its caller went away while it waited
                self._dequeued(item)
                continue
            if item.deadline is not None and now >= item.deadline:  # given up on, if not yet gone
                self._dequeued(item)
                item.future.set_exception(DeadlineExceeded(LATE))
                continue
            if batch:
                joined_rows, top, bottom = rows + item.rows, max(longest, item.time), min(shortest, item.time)
                if (
                    joined_rows > max_rows
                    or joined_rows * top > self.batcher.max_batch_row_steps
                    or not within_spread(bottom, top)
                ):
                    kept.append(item)
                    if rows >= max_rows:
                        break
                    continue
            self._dequeued(item)
            batch.append(item)
            rows += item.rows
            longest = max(longest, item.time)
            shortest = item.time if len(batch) == 1 else min(shortest, item.time)
        kept.extend(self.waiting)
        self.waiting = kept
        for item in batch:
            self.batcher.observer.waited(self.runtime, now - item.queued_at)
        return batch


def _rows(batch: list[_Pending]) -> int:
    return sum(item.rows for item in batch)


def _row_steps(batch: list[_Pending]) -> int:
    """A batch's padded size: its rows, each as long as its longest chunk."""
    return _rows(batch) * max(item.time for item in batch)


def merge(feeds: list[Feed]) -> Feed:
    """Stack requests' rows into one feed, padding each chunk to the longest one (lstmserve/rows.py)."""
    merged = {contract.INPUT: stack_rows([feed[contract.INPUT] for feed in feeds])}
    for name in feeds[0]:
        if name != contract.INPUT:  # sequence_lengths and the initial states: rows stack as they are
            merged[name] = np.concatenate([feed[name] for feed in feeds])
    return merged


def split(outputs: dict[str, np.ndarray], shapes: list[tuple[int, int]]) -> list[dict[str, np.ndarray]]:
    """Each request's rows back, with batch-major per-step outputs cut to its own chunk length."""
    pieces = {}
    for name, value in outputs.items():
        # output and per-step logits have a time axis; states and classify_last logits do not.
        per_step = name == contract.OUTPUT or (name == contract.LOGITS and value.ndim == 3)
        pieces[name] = split_rows(value, shapes, per_step)
    return [{name: parts[index] for name, parts in pieces.items()} for index in range(len(shapes))]
