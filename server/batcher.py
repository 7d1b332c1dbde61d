"""Batcher: merge concurrent requests for one model version into one onnxruntime run, exactly.

    requests, from Infer and StreamInfer alike, any chunk length
       │  a bounded queue per model version: past max_queue_rows, RESOURCE_EXHAUSTED at once
       ▼
    `concurrency` workers: each takes what is waiting, up to max_batch_rows (waiting up to max_delay
       │  for more), pads every chunk to the longest; sequence_lengths keeps each row to its own steps
       ▼
    onnxruntime, off the event loop ──► rows and steps split back to each request

Exact because the LSTM stops each row at its own length (outputs zero and state frozen past it): a
row's answer does not depend on what it was batched with, to float32 round-off of the matrix kernels.
The servicer does not know this module exists: it awaits `run(runtime, feed)`.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from lstmserve import contract

from .errors import ResourceExhausted
from .runtime import ModelRuntime

Feed = dict[str, np.ndarray]


@dataclass
class _Pending:
    feed: Feed
    rows: int
    time: int
    future: asyncio.Future


class Batcher:
    def __init__(
        self,
        executor: Executor,
        concurrency: int,
        max_batch_rows: int = 64,
        max_delay: float = 0.0,
        max_queue_rows: int = 1024,
    ):
        """max_batch_rows 0 turns batching off: each request runs alone (still bounded and off-loop)."""
        self.executor = executor
        self.concurrency = concurrency
        self.max_batch_rows = max_batch_rows
        self.max_delay = max_delay
        self.max_queue_rows = max_queue_rows
        self._lanes: dict[ModelRuntime, _Lane] = {}
        self.batches = 0  # onnxruntime runs so far
        self.requests = 0  # requests they answered (requests / batches: the mean batch, in requests)

    async def run(self, runtime: ModelRuntime, feed: Feed) -> dict[str, np.ndarray]:
        lane = self._lanes.get(runtime)
        if lane is None:
            lane = self._lanes[runtime] = _Lane(self, runtime)
        return await lane.submit(feed)

    async def close(self) -> None:
        for lane in self._lanes.values():
            await lane.close()
        self._lanes.clear()

    @property
    def queued_rows(self) -> int:
        return sum(lane.queued_rows for lane in self._lanes.values())


class _Lane:
    """One model version's queue and its workers."""

    def __init__(self, batcher: Batcher, runtime: ModelRuntime):
        self.batcher = batcher
        self.runtime = runtime
        self.waiting: collections.deque[_Pending] = collections.deque()
        self.queued_rows = 0
        self.arrived = asyncio.Event()
        self.workers = [asyncio.create_task(self._work()) for _ in range(batcher.concurrency)]

    async def submit(self, feed: Feed) -> dict[str, np.ndarray]:
        rows, time = feed[contract.INPUT].shape[:2]
        limit = self.batcher.max_queue_rows
        if self.queued_rows + rows > limit:
            info = self.runtime.info
            raise ResourceExhausted(
                f"{info.name} v{info.version} has {self.queued_rows} rows queued (limit {limit}); "
                "retry shortly, or add replicas"
            )
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(_Pending(feed, rows, time, future))
        self.queued_rows += rows
        self.arrived.set()
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.waiting:
                self.arrived.clear()
                await self.arrived.wait()
            batch = self._take([])
            if self.batcher.max_delay > 0 and self._room(batch):
                deadline = loop.time() + self.batcher.max_delay
                while self._room(batch) and (remaining := deadline - loop.time()) > 0:
                    self.arrived.clear()
                    try:
                        await asyncio.wait_for(self.arrived.wait(), remaining)
                    except asyncio.TimeoutError:  # not the builtin before Python 3.11
                        break
                    batch = self._take(batch)
            await self._run(batch)

    def _room(self, batch: list[_Pending]) -> bool:
        return 0 < sum(item.rows for item in batch) < self.batcher.max_batch_rows

    def _take(self, batch: list[_Pending]) -> list[_Pending]:
        """Add waiting requests, oldest first, while they fit in max_batch_rows (always at least one)."""
        rows = sum(item.rows for item in batch)
        while self.waiting:
            item = self.waiting[0]
            if batch and rows + item.rows > self.batcher.max_batch_rows:
                break
            self.waiting.popleft()
            self.queued_rows -= item.rows
            if item.future.done():  # the caller went away (cancelled) while it waited
                continue
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        loop = asyncio.get_running_loop()
        try:
            if len(batch) == 1:
                results = [await loop.run_in_executor(self.batcher.executor, self.runtime.run, batch[0].feed)]
            else:
                merged = merge([item.feed for item in batch])
                outputs = await loop.run_in_executor(self.batcher.executor, self.runtime.run, merged)
                results = split(outputs, [(item.rows, item.time) for item in batch])
        except Exception as exc:  # onnxruntime failed: every caller in the batch hears of it
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.batcher.batches += 1
        self.batcher.requests += len(batch)
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


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
