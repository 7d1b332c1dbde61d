"""How chunks of many streams gather into few calls: queues of chunks that stack, the bounds of one
gathered call, and the merging of their rows into one request and the splitting of its answer.

client/coalesce.py drives it, from asyncio tasks (AsyncClient) or threads (Client).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from lstmserve.codec import write_state, write_tensor
from lstmserve.limits import DEFAULT_LIMITS, RequestLimits
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.rows import split_rows, stack_lengths, stack_rows, within_spread

from .errors import LstmServeClientError
from .messages import InferResult, infer_request
from .state import State

_ROW_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
MAX_ROWS = 256  # rows of one gathered call
# A gathered call's request and answer stay within 1/_MESSAGE_SHARE of the server's
# max_message_bytes (the answer judged from the bytes per row-step of the queue's last answer), with
# room to spare: a refused gathered call costs a round trip, then one call per chunk. Its padded rows
# x steps stay within the server's max_request_row_steps, and until an answer is seen within
# _ROW_STEPS_UNSEEN too (the client's own caution, not a server's limit). The server's limits are
# Gathering.limits: what GetModel said, once the client has asked, else the defaults of every server.
# A server with smaller messages refuses a gathered call as too big; the queue's budget is then halved
# below that call's size, so it happens once, not every round.
_MESSAGE_SHARE = 2
_ROW_STEPS_UNSEEN = 4096


@dataclass(eq=False)  # compared by identity: it holds arrays
class Waiting:
    """One stream's chunk, as arrays: stacked with others' without a message of its own."""

    model: str
    version: int
    outputs: tuple[str, ...]
    x: np.ndarray  # (rows, steps, input_size) float32
    lengths: np.ndarray | None
    state: State | None
    answer: Any = None  # an asyncio.Future (AsyncClient) or a concurrent Future (Client), once queued

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    @property
    def steps(self) -> int:
        return self.x.shape[1]

    def request(self) -> pb.InferRequest:
        return infer_request(self.model, self.x, self.state, self.lengths, self.version, self.outputs)


@dataclass
class ChunkQueue:
    """The chunks of one key (Gathering._key: chunks that stack) waiting to be gathered."""

    waiting: list[Waiting] = field(default_factory=list)
    # A call for this key is in flight: what arrives meanwhile waits to go with the next. One at a
    # time: measured at 256 streams of the 2x128 model on two cores, allowing 2 or 3 (the client
    # gathering one call while the server computes another) gained nothing: the client's own Python
    # per chunk is the bound.
    busy: bool = False


class Gathering:
    """What both coalescers share: queues of stackable chunks, and how a batch is taken from one."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self._queues: dict[tuple, ChunkQueue] = {}
        self._row_step_bytes: dict[tuple, float] = {}  # per queue key: its last answer's bytes per row-step
        self._budget: dict[tuple, float] = {}  # per queue key, where a gathered call was refused as too big
        # The server's, from GetModel (Client.model, .models); until then, its settings' defaults.
        self.limits: RequestLimits = DEFAULT_LIMITS
        self.calls = 0  # requests sent (for tests and the bench)
        self.sealing = False  # the server seals its states: one sealed state cannot be split by rows

    def _key(self, waiting: Waiting) -> tuple | None:
        """What chunks that stack share (the same model version, outputs, state's maker and
        features), or None for a chunk that can only go alone."""
        state = waiting.state
        if self.sealing or not _stackable(waiting):
            return None
        fingerprint = state.fingerprint if state is not None else ""
        # The state's per-layer sizes too: arrays of other sizes could not be stacked at all.
        sizes = () if state is None else tuple((c.shape[1], h.shape[1]) for c, h in state.layers)
        return (waiting.model, waiting.version, waiting.outputs, fingerprint, waiting.x.shape[2], sizes)

    def _queue(self, waiting: Waiting) -> tuple[tuple, ChunkQueue] | None:
        key = self._key(waiting)
        return None if key is None else (key, self._queues.setdefault(key, ChunkQueue()))

    def _take(self, key: tuple, queue: ChunkQueue) -> list[Waiting]:
        """The oldest chunk, and those after it within max_rows, the answer's bytes and the length
        spread (lstmserve/rows.py: the batch's chunk lengths within 2x of each other)."""
        shortest = queue.waiting[0].steps
        budget = self._budget.get(key, self.limits.max_message_bytes // _MESSAGE_SHARE)
        batch: list[Waiting] = []
        rows = longest = 0
        for waiting in list(queue.waiting):
            joined, padded = rows + waiting.rows, max(longest, waiting.steps)
            if batch and (joined > self.max_rows or self._bytes(key, waiting, joined, padded) > budget):
                break
            if within_spread(min(shortest, waiting.steps), padded):  # the oldest always: within itself
                batch.append(waiting)
                rows, longest, shortest = joined, padded, min(shortest, waiting.steps)
                queue.waiting.remove(waiting)
        return batch

    def _bytes(self, key: tuple, waiting: Waiting, rows: int, steps: int) -> float:
        """The larger of a gathered call's request and answer, as far as known; past the server's
        row-steps, infinite."""
        per_row_step = self._row_step_bytes.get(key)
        limit = self.limits.max_request_row_steps
        if per_row_step is None:
            limit = min(limit, _ROW_STEPS_UNSEEN)
        if rows * steps > limit:
            return float("inf")
        request = rows * steps * waiting.x.shape[2] * 4  # float32 inputs: the bulk of it
        return max(request, rows * steps * (per_row_step or 0.0))

    def _refused(self, batch: list[Waiting], error: LstmServeClientError) -> bool:
        """Whether a gathered call's refusal may be one row's fault, or its size (then the queue's
        budget shrinks below it): either way each chunk goes again alone."""
        too_big = _over_channel_limit(error)
        if len(batch) < 2 or not (too_big or error.code in _ROW_ERRORS):
            return False
        # NOTE: only a refusal that names a limit (the server's trailing metadata: max_message_bytes,
        # max_request_row_steps, ...) or gRPC's own too-big shrinks the budget: one row's NaN or
        # foreign state set it to half of that small call, and the queue never gathered again.
        key = self._key(batch[0])
        if key is not None and (too_big or error.limit is not None):
            rows, steps = sum(w.rows for w in batch), max(w.steps for w in batch)
            self._budget[key] = self._bytes(key, batch[0], rows, steps) / 2
        return True

    def _learn(
        self, key: tuple | None, result: InferResult, rows: int, steps: int, again: bool = True
    ) -> InferResult:
        """Keep the answer's bytes per row-step for the queue's next gathered calls (`again`: even if
        known; a lone stream's calls learn it once, and pay nothing more)."""
        if key is not None and (again or key not in self._row_step_bytes):
            arrays = [result.output, result.logits]
            if result.state is not None and not result.state.sealed:
                arrays += [array for layer in result.state.layers for array in layer]
            answer = sum(array.nbytes for array in arrays if array is not None)
            self._row_step_bytes[key] = max(answer / max(rows * steps, 1), 1.0)
        return result

    def _leads(self, queue: ChunkQueue, waiting: Waiting) -> bool:
        """A chunk arrives: True if it goes at once as a call of its own (the queue is idle), else it
        waits for the call in flight to end."""
        if not queue.busy:
            queue.busy = True
            return True
        queue.waiting.append(waiting)
        return False

    def _release(self, key: tuple, queue: ChunkQueue) -> bool:
        """A call for the key has ended: True if what waits goes next (a drain goes on, or a lead
        call's caller starts one); else the queue is idle, and gone."""
        if queue.waiting:
            return True
        queue.busy = False
        self._queues.pop(key, None)
        return False

    def _abandon(self, key: tuple, queue: ChunkQueue, exc: BaseException) -> None:
        """A drain fails (a bug, the loop closing, the client closed): nobody may wait forever."""
        fail(queue.waiting, exc)
        queue.waiting.clear()
        self._release(key, queue)

    def _answered(self, batch: list[Waiting], merged: InferResult) -> bool:
        """Each chunk's share of a gathered answer delivered; False if the answer cannot be split."""
        if merged.state is not None and merged.state.sealed:
            self.sealing = True
            return False
        rows, steps = sum(waiting.rows for waiting in batch), max(waiting.steps for waiting in batch)
        self._learn(self._key(batch[0]), merged, rows, steps)
        for waiting, result in zip(batch, _split(merged, batch)):
            settle(waiting, result)
        return True


def _over_channel_limit(error: LstmServeClientError) -> bool:
    """Whether gRPC itself refused a message over a channel's max length: RESOURCE_EXHAUSTED
    "SERVER: Received message larger than max (N vs. M)" (a request over the server's
    max_message_bytes), "CLIENT: Received ..." (an answer over the client's max_message_bytes) or
    "CLIENT: Sent ..." (a request over it), read from grpcio 1.85. gRPC's core sends no metadata of
    ours, so only its words tell; the server's own refusals name their limit instead (error.limit)."""
    return (
        error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and error.limit is None
        and "larger than max" in error.details
    )


def _stackable(waiting: Waiting) -> bool:
    """Whether a chunk's rows may share a call: at least one row, a length per row within its own
    steps, a float32 unsealed state of one row per row. Else it goes alone and the server judges it
    as sent. NOTE: merged, such a chunk was accepted wrongly (a length reaching into the padding of
    a longer chunk; state rows lent to or borrowed from another chunk) or broke the merge, failing
    every chunk gathered with it."""
    x, lengths, state = waiting.x, waiting.lengths, waiting.state
    if x.ndim != 3 or x.shape[0] == 0:
        return False
    rows, steps = x.shape[:2]
    if lengths is not None and (lengths.shape != (rows,) or lengths.min() < 0 or lengths.max() > steps):
        return False
    if state is None:
        return True
    if state.sealed or not state.layers:
        return False
    return all(
        array.ndim == 2 and array.shape[0] == rows and array.dtype == np.float32
        for layer in state.layers
        for array in layer
    )


def settle(waiting: Waiting, result: InferResult) -> None:
    if not waiting.answer.done():  # done: an async caller went away
        waiting.answer.set_result(result)


def fail(batch: list[Waiting], exc: BaseException) -> None:
    for waiting in batch:
        if not waiting.answer.done():
            waiting.answer.set_exception(exc)


def merge(batch: list[Waiting]) -> pb.InferRequest:
    """One request of every chunk's rows: zero-padded to the longest, lengths kept per row
    (lstmserve/rows.py)."""
    chunks = [waiting.x for waiting in batch]
    first = batch[0]
    merged = pb.InferRequest(model=first.model, version=first.version, outputs=first.outputs)
    write_tensor(merged.input, stack_rows(chunks))
    write_tensor(merged.sequence_lengths, stack_lengths(chunks, [waiting.lengths for waiting in batch]))
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


def _split(result: InferResult, batch: list[Waiting]) -> list[InferResult]:
    """Each request's rows back, per-step outputs cut to its own chunk's length."""
    shapes = [(waiting.rows, waiting.steps) for waiting in batch]
    output, logits = _cut(result.output, shapes), _cut(result.logits, shapes)
    states: list[State | None] = [None] * len(batch)
    if result.state is not None:
        # Per layer: each chunk's rows of c, and of h.
        layers = [
            (split_rows(c, shapes, False), split_rows(h, shapes, False)) for c, h in result.state.layers
        ]
        states = [
            State(result.state.fingerprint, tuple((c[index], h[index]) for c, h in layers))
            for index in range(len(batch))
        ]
    return [
        InferResult(output[index], logits[index], states[index], result.model, result.version)
        for index in range(len(batch))
    ]


def _cut(array: np.ndarray | None, shapes: list[tuple[int, int]]) -> Sequence[np.ndarray | None]:
    if array is None:
        return [None] * len(shapes)
    return split_rows(array, shapes, per_step=array.ndim == 3)  # per-step: each chunk's steps only
