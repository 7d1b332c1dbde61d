"""State: every layer's (c, h) and the fingerprint of the model that made it; yours to keep.

Send it back with the next chunk, save it to bytes to resume tomorrow or on another replica, or hand
the same state to two streams to fork a sequence. A state is only valid for the model that made it.
A server with --state-key-file seals its states: then `sealed` holds them as opaque bytes, `layers`
is empty, and everything above works the same (on any replica with the same keys).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from lstmserve.codec import TensorError, decode_state, write_state
from lstmserve.proto.v1 import lstmserve_pb2 as pb


@dataclass(frozen=True)
class State:
    fingerprint: str
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # per layer (c, h), each (batch, hidden_sizes[l])
    sealed: bytes = b""  # the layers, sealed by the server (then `layers` is empty)

    @property
    def batch(self) -> int:
        if self.sealed:
            raise ValueError("a sealed state's rows are sealed too")
        return self.layers[0][0].shape[0]

    def to_proto(self) -> pb.State:
        message = pb.State()
        self.write_to(message)
        return message

    def write_to(self, target: pb.State) -> None:
        """The state into a message's own field, in place (codec.write_state says why)."""
        if self.sealed:
            target.fingerprint, target.sealed = self.fingerprint, self.sealed
        else:
            write_state(target, self.fingerprint, self.layers)

    @classmethod
    def from_proto(cls, message: pb.State) -> State:
        if message.sealed:
            return cls(message.fingerprint, (), message.sealed)
        return cls(message.fingerprint, tuple(decode_state(message)))

    def to_bytes(self) -> bytes:
        """The state as the wire's own bytes: store them anywhere, restore with from_bytes."""
        return self.to_proto().SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> State:
        message = pb.State()
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise TensorError(f"not a saved lstmserve state ({exc})") from None
        return cls.from_proto(message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (
            self.fingerprint == other.fingerprint
            and self.sealed == other.sealed
            and len(self.layers) == len(other.layers)
            and all(
                np.array_equal(a, b)
                for mine, theirs in zip(self.layers, other.layers)
                for a, b in zip(mine, theirs)
            )
        )

    __hash__ = None  # type: ignore[assignment]  # arrays are not hashable
