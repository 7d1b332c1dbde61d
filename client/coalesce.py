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

from lstmserve.codec import decode_state, decode_tensor, encode_state, encode_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import LstmServeClientError
from .messages import InferResult
from .state import State

_ROW_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


@dataclass
class _Waiting:
    request: pb.InferRequest
    rows: int
    steps: int
    answer: asyncio.Future


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

    async def send(self, request: pb.InferRequest) -> InferResult:
        alone = self.sealing or request.state.sealed
        if alone or not request.HasField("input") or len(request.input.shape) != 3:
            self.calls += 1
            return await self._send(request)  # alone: nothing to stack it with (or the server says why)
        key = (request.model, request.version, tuple(request.outputs), request.state.fingerprint)
        lane = self._lanes.setdefault(key, _Lane())
        rows, steps = request.input.shape[0], request.input.shape[1]
        waiting = _Waiting(request, rows, steps, asyncio.get_running_loop().create_future())
        lane.waiting.append(waiting)
        if not lane.busy:
            lane.busy = True
            asyncio.get_running_loop().create_task(self._drain(key, lane))
        return await waiting.answer

    async def _drain(self, key: tuple, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch = self._take(lane)
                await self._run(batch)
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
                results = [await self._send(live[0].request)]
            else:
                merged = await self._send(_merge([w.request for w in live]))
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


def _merge(requests: list[pb.InferRequest]) -> pb.InferRequest:
    """One request of every request's rows: chunks zero-padded to the longest, lengths kept per row."""
    chunks = [decode_tensor(request.input, "input") for request in requests]
    steps = max(chunk.shape[1] for chunk in chunks)
    rows = sum(chunk.shape[0] for chunk in chunks)
    x = np.zeros((rows, steps, chunks[0].shape[2]), np.float32)
    lengths, at = [], 0
    for request, chunk in zip(requests, chunks):
        x[at : at + chunk.shape[0], : chunk.shape[1]] = chunk
        at += chunk.shape[0]
        if request.HasField("sequence_lengths"):
            lengths.append(decode_tensor(request.sequence_lengths, "sequence_lengths").astype(np.int32))
        else:
            lengths.append(np.full(chunk.shape[0], chunk.shape[1], np.int32))
    first = requests[0]
    merged = pb.InferRequest(
        model=first.model,
        version=first.version,
        input=encode_tensor(x),
        sequence_lengths=encode_tensor(np.concatenate(lengths)),
        outputs=first.outputs,
    )
    if first.HasField("state"):  # the key holds the fingerprint: all have a state, or none
        layers = [decode_state(request.state) for request in requests]
        stacked = [
            tuple(np.concatenate([state[layer][part] for state in layers]) for part in (0, 1))
            for layer in range(len(layers[0]))
        ]
        merged.state.CopyFrom(encode_state(first.state.fingerprint, stacked))  # type: ignore[arg-type]
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
