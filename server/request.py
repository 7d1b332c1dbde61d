"""What a call asks and what it gets, in no protocol's words.

Each protocol's adapter (server/protocols/) decodes its wire message into a `Request` and encodes an
`Answer` back into its wire; everything between them (validation.py, dataplane.py, the batcher, the
runtime) works on these. A state is a `State` throughout: only the runtime knows the names the
model gives its tensors (initial_c_{l} in, final_c_{l} out) and maps them to a run's feed and back.
(KServe's wire uses the same names, so its adapter spells them too, for its own messages.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lstmserve.codec import LayerArrays

StatePart = tuple[int, int]  # (layer, 0 for c or 1 for h): one tensor of a state


@dataclass
class State:
    """A stack's state: per layer (c, h), each (batch, hidden_sizes[l]), bottom to top, with the
    fingerprint of the model that made it; or, where the server seals, the same sealed as bytes."""

    fingerprint: str
    layers: LayerArrays
    sealed: bytes = b""  # a sealed state (layers then empty)


@dataclass(frozen=True)
class Wanted:
    """The outputs a request asks for: the per-step output, the logits, and which state tensors."""

    output: bool
    logits: bool
    state: tuple[StatePart, ...]

    @classmethod
    def everything(cls, head: bool, num_layers: int) -> Wanted:
        return cls(True, head, whole_state(num_layers))

    @property
    def tensors(self) -> int:
        return self.output + self.logits + len(self.state)

    @property
    def only_state(self) -> bool:
        return not (self.output or self.logits)


def whole_state(num_layers: int) -> tuple[StatePart, ...]:
    return tuple((layer, part) for layer in range(num_layers) for part in (0, 1))


@dataclass
class Request:
    """One chunk of rows to run: its tensors as sent, not yet checked against the model."""

    input: np.ndarray | None  # (batch, time, input_size) float32
    wanted: Wanted
    sequence_lengths: np.ndarray | None = None  # (batch,) int32 or int64; None means full length
    state: State | None = None  # None means zero state (or the state a stream holds)
    echoed_bytes: int = 0  # bytes of the request its answer carries back (a KServe id)


@dataclass
class Answer:
    """What a run returned that the request asked for; the state sealed where the server seals."""

    output: np.ndarray | None  # (batch, time, hidden_sizes[-1])
    logits: np.ndarray | None  # (batch, num_outputs) or (batch, time, num_outputs)
    state: State | None  # the whole state where any of its tensors was asked for


@dataclass
class GenerateRequest:
    """How to go on from a prompt (server/generation.py checks each option against the model); the
    prompt itself is a `Request`, decoded once the options have passed."""

    max_steps: int
    feedback: str  # generation.CHOICE or generation.VALUE (anything else is refused there)
    temperature: float
    top_k: int
    seed: int | None  # None: the server draws one
    stop_classes: Sequence[int] = field(default_factory=tuple)  # as sent: checked before it is an array
