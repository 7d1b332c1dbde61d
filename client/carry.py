"""What a stream carries between chunks: the state, the version that made it and, with sparse state
(`state_every=k`, bidi only), the window of chunks fed since the last state held.

Within one StreamInfer call the server holds the state, so the state need only come back on every k-th
chunk. The chunks in between are kept (as the requests that carried them, bytes already encoded) so
that a new call can replay them from the last state held when the old one breaks:

    state S ── chunk 1 ── chunk 2 ── ... ── chunk k-1 ── chunk k (asks for the state: S', window empty)
               └──────────── kept: replayed from S on a new call ────────┘
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from lstmserve.contract import LOGITS, OUTPUT
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .messages import InferResult, infer_request
from .state import State

STATE = "state"  # InferRequest.outputs' name for every layer's final (c, h)


class Window:
    def __init__(self, every: int, outputs: Sequence[str] | None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"state_every must be a whole number of chunks >= 1, got {every!r}")
        if isinstance(outputs, str):
            raise TypeError(f'outputs is a list of names, e.g. ["{outputs}"], not a string')
        self.every = every
        self.kept: list[pb.InferRequest] = []  # oldest first, none asking for the state
        # None: all (the model's own names, which a state-less request must spell out, are learnt
        # from the first answer, so no GetModel call is needed).
        self.with_state = None if outputs is None else [*dict.fromkeys([*outputs, STATE])]
        self.without_state = None if outputs is None else [name for name in outputs if name != STATE]
        # A caller who wants only states still gets an answer per chunk: the output, not shown.
        self.hide_output = self.without_state == []
        if self.hide_output:
            self.without_state = [OUTPUT]

    @property
    def asks_state_next(self) -> bool:
        """Whether the next chunk fed asks for the state (every k-th, or while the names are unknown)."""
        return len(self.kept) + 1 >= self.every or self.without_state is None

    def outputs(self) -> list[str] | None:
        """InferRequest.outputs for the next chunk fed (None: all)."""
        return self.with_state if self.asks_state_next else self.without_state

    def replay(self, version: int) -> pb.InferRequest:
        """The oldest kept chunk again, asking only for the state: a replay broken again loses nothing."""
        request = pb.InferRequest()
        request.CopyFrom(self.kept[0])
        request.version = version  # the version pinned since: a state only fits the model that made it
        request.ClearField("outputs")
        request.outputs.append(STATE)
        return request

    def checkpoint(self, version: int) -> pb.InferRequest:
        """A zero-step chunk asking for the state: the server answers with the state it holds."""
        rows, _, features = self.kept[-1].input.shape
        empty = np.empty((rows, 0, features), np.float32)  # (batch, time = 0, input_size)
        return infer_request(self.kept[-1].model, empty, version=version, outputs=[STATE])

    def learn(self, result: InferResult) -> None:
        """Take the model's output names from an answer to a request that asked for all."""
        if self.without_state is None:
            self.without_state = [OUTPUT] + ([LOGITS] if result.logits is not None else [])

    def shown(self, result: InferResult) -> InferResult:
        return dataclasses.replace(result, output=None) if self.hide_output else result


class Carry:
    """What Stream and AsyncStream share: the state they carry, the version that made it, and the
    window of chunks fed since it."""

    def __init__(
        self,
        model: str,
        version: int,
        state: State | None,
        bidi: bool,
        outputs: Sequence[str] | None,
        state_every: int,
        time_major: bool = False,
    ):
        self._window = Window(state_every, outputs)
        self.time_major = time_major  # chunks in and results out time first; the wire is batch-major
        if state_every != 1 and not bidi:
            # A unary chunk carries the state up, so its answer must bring the next one back.
            raise ValueError("state_every > 1 needs bidi=True: a unary stream needs every state back")
        self.model = model
        self.version = version  # 0 until the first answer pins the version that made the state
        self._state = state
        self.bidi = bidi
        self.outputs = self._window.with_state  # what a chunk that asks for the state asks for
        self._fresh = False  # a call is open that has not been sent the state yet

    @property
    def state(self) -> State | None:
        """The last state held (None before the first): yours to save, restore or fork. With
        state_every > 1 it may be `pending` chunks old: checkpoint() brings it up to date."""
        return self._state

    @property
    def pending(self) -> int:
        """Chunks fed since `state` (0 unless state_every > 1), kept to replay if the call breaks."""
        return len(self._window.kept)

    @property
    def state_every(self) -> int:
        return self._window.every

    def _settings(self) -> dict[str, Any]:
        """What a fork carries on: every constructor argument but the client, as this stream holds it
        now (tests/client/test_halves.py holds this to the constructors' signatures)."""
        return {
            "model": self.model,
            "version": self.version,
            "state": self._state,
            "bidi": self.bidi,
            "outputs": self.outputs,
            "state_every": self.state_every,
            "time_major": self.time_major,
        }

    def save(self) -> bytes:
        """The current state as bytes; `client.stream(model, state=State.from_bytes(data))` resumes it."""
        self._refuse_pending("save()")
        if self._state is None:
            raise ValueError("nothing to save: no chunk has been fed yet")
        return self._state.to_bytes()

    def _refuse_pending(self, action: str) -> None:
        # Explicit, not an implicit call: AsyncStream could not await one here.
        if self._window.kept:
            chunks = f"{self.pending} chunk" + ("s" if self.pending > 1 else "")
            raise ValueError(
                f"{chunks} fed since the last state this stream holds: call checkpoint() before {action}"
            )

    def _request(self, chunk: Any, lengths: Any) -> pb.InferRequest:
        """A bidi chunk's request: no state (the call's first request gets it: _stamp)."""
        return infer_request(self.model, chunk, None, lengths, self.version, self._window.outputs())

    def _stamp(self, request: pb.InferRequest) -> pb.InferRequest:
        """The first request on a new call brings the state held; later ones use the server's."""
        if not self._fresh or self._state is None:
            self._fresh = False
            return request
        self._fresh = False
        stamped = pb.InferRequest()
        stamped.CopyFrom(request)  # the kept request stays without a state, to be replayed from any
        self._state.write_to(stamped.state)
        return stamped

    def _keep(self, result: InferResult) -> InferResult:
        self._state, self.version = result.state, result.version
        return result

    def _take(self, request: pb.InferRequest, result: InferResult) -> InferResult:
        """A fed chunk's answer: a state to hold, or (state_every > 1) the chunk to keep until one."""
        self.version = result.version
        if result.state is None:
            self._window.kept.append(request)
        else:
            self._settled(result)
        self._window.learn(result)
        return self._window.shown(result)

    def _replayed(self, result: InferResult) -> None:
        self._keep(result)
        self._window.kept.pop(0)

    def _settled(self, result: InferResult) -> None:
        """The state after every chunk fed: nothing left to replay."""
        self._keep(result)
        self._window.kept.clear()
