"""Coalescing: many streams of one model in one process sent as few calls (AsyncClient(coalesce=True)).

While a call is in flight, the chunks other streams send for the same model version are gathered; when
it returns, they go as one request: one row per stream's row, chunks padded to the longest with their
own lengths in `sequence_lengths`, states stacked; the answer is split back. The server's semantics
(each row stops at its own length: outputs zero past it, state frozen) make this exact. A lone stream
never waits: with nothing in flight its chunk goes at once.

Bounds: at most `max_rows` rows per call, and chunks only within 2x of each other's length (padding
never more than doubles a call). A gathered call the server refuses as a whole for a reason one row
could cause (INVALID_ARGUMENT, FAILED_PRECONDITION) is sent again row by row, so that each stream gets
its own answer or error; other failures (UNAVAILABLE after the retries, a deadline) reach every
stream in it. Sealed states cannot be stacked or split: once a server answers a gathered call with
one, every request to it goes alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from lstmserve.codec import write_state, write_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import LstmServeClientError
from .messages import InferResult, infer_request
from .state import State

_ROW_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


@dataclass(eq=False)  # compared by identity: it holds arrays
class _Waiting:
    """One stream's chunk, as arrays: stacked with others' without a message of its own."""

    model: str
    version: int
    outputs: tuple[str, ...]
    x: np.ndarray  # (rows, steps, input_size) float32
    lengths: np.ndarray | None
    state: State | None
    answer: asyncio.Future

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    @property
    def steps(self) -> int:
        return self.x.shape[1]

    def request(self) -> pb.InferRequest:
        return infer_request(self.model, self.x, self.state, self.lengths, self.version, self.outputs)


@dataclass
class _Lane:
    waiting: list[_Waiting] = field(default_factory=list)
    busy: bool = False


class Coalescer:
    def __init__(self, send: Callable[[pb.InferRequest], Awaitable[InferResult]], max_rows: int = 256):
        self._send, self.max_rows = send, max_rows
        self._lanes: dict[tuple, _Lane] = {}
        self.calls = 0  # requests sent (for tests and the bench)
        self.sealing = False  # the server seals its states: one sealed state cannot be split by rows

    async def infer(
        self,
        model: str,
        x: np.ndarray,
        state: State | None,
        lengths: np.ndarray | None,
        version: int,
        outputs: tuple[str, ...],
    ) -> InferResult:
        """One stream's chunk: gathered with other streams' while a call is in flight."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(model, version, outputs, x, lengths, state, loop.create_future())
        if self.sealing or x.ndim != 3 or (state is not None and state.sealed):
            self.calls += 1
            return await self._send(waiting.request())  # alone: nothing to stack it with
        # Only chunks that stack: the same model version, outputs, state's maker and features.
        key = (model, version, outputs, state.fingerprint if state is not None else "", x.shape[2])
        lane = self._lanes.setdefault(key, _Lane())
        lane.waiting.append(waiting)
        if not lane.busy:
            lane.busy = True
            loop.create_task(self._drain(key, lane))
        return await waiting.answer

    async def _drain(self, key: tuple, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch = self._take(lane)
                await self._run(batch)
        except BaseException as exc:  # a bug here, or the loop closing: nobody may wait forever
            for waiting in lane.waiting:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            lane.waiting.clear()
            raise
        finally:
            lane.busy = False
            if not lane.waiting:
                self._lanes.pop(key, None)

    def _take(self, lane: _Lane) -> list[_Waiting]:
        """The oldest chunk, and those after it within max_rows and 2x of its length."""
        first = lane.waiting[0]
        low, high = max(first.steps // 2, 1), first.steps * 2
        batch: list[_Waiting] = []
        rows = 0
        for waiting in list(lane.waiting):
            if rows + waiting.rows > self.max_rows and batch:
                break
            if waiting is first or (low <= waiting.steps <= high):
                batch.append(waiting)
                rows += waiting.rows
                lane.waiting.remove(waiting)
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        live = [waiting for waiting in batch if not waiting.answer.done()]  # a caller gone: skip it
        if not live:
            return
        self.calls += 1
        try:
            if len(live) == 1:
                results = [await self._send(live[0].request())]
            else:
                merged = await self._send(_merge(live))
                if merged.state is not None and merged.state.sealed:  # cannot be split: each alone
                    self.sealing = True
                    await asyncio.gather(*(self._run([waiting]) for waiting in live))
                    return
                results = _split(merged, live)
        except LstmServeClientError as exc:
            if len(live) > 1 and exc.code in _ROW_ERRORS:
                await asyncio.gather(*(self._run([waiting]) for waiting in live))  # whose was it?
                return
            for waiting in live:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        except BaseException as exc:
            for waiting in live:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            raise
        for waiting, result in zip(live, results):
            if not waiting.answer.done():
                waiting.answer.set_result(result)


def _merge(batch: list[_Waiting]) -> pb.InferRequest:
    """One request of every chunk's rows: zero-padded to the longest, lengths kept per row."""
    steps = max(waiting.steps for waiting in batch)
    rows = sum(waiting.rows for waiting in batch)
    x = np.zeros((rows, steps, batch[0].x.shape[2]), np.float32)
    lengths, at = [], 0
    for waiting in batch:
        x[at : at + waiting.rows, : waiting.steps] = waiting.x
        at += waiting.rows
        own = waiting.lengths
        lengths.append(np.full(waiting.rows, waiting.steps, np.int32) if own is None else own)
    first = batch[0]
    merged = pb.InferRequest(model=first.model, version=first.version, outputs=first.outputs)
    write_tensor(merged.input, x)
    write_tensor(merged.sequence_lengths, np.concatenate(lengths).astype(np.int32))
    if first.state is not None:  # the key holds the fingerprint: all have a state, or none
        states = [waiting.state.layers for waiting in batch]  # type: ignore[union-attr]
        stacked = [
            (
                np.concatenate([layers[i][0] for layers in states]),
                np.concatenate([layers[i][1] for layers in states]),
            )
            for i in range(len(states[0]))
        ]
        write_state(merged.state, first.state.fingerprint, stacked)
    return merged


def _split(result: InferResult, batch: list[_Waiting]) -> list[InferResult]:
    """Each request's rows back, per-step outputs cut to its own chunk's length."""
    results, at = [], 0
    for waiting in batch:
        rows = slice(at, at + waiting.rows)
        at += waiting.rows
        state = None
        if result.state is not None:
            layers = tuple((c[rows], h[rows]) for c, h in result.state.layers)
            state = State(result.state.fingerprint, layers)
        output, logits = _cut(result.output, rows, waiting.steps), _cut(result.logits, rows, waiting.steps)
        results.append(InferResult(output, logits, state, result.model, result.version))
    return results


def _cut(array: np.ndarray | None, rows: slice, steps: int) -> np.ndarray | None:
    if array is None:
        return None
    mine = array[rows]
    return mine[:, :steps] if mine.ndim == 3 else mine  # per-step outputs: this chunk's steps only
