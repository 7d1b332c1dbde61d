"""Client-side messages: the request for a chunk, and InferResult / ModelInfo decoded from responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmserve.codec import decode_tensor, encode_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .state import State


def infer_request(
    model: str, input: Any, state: State | None = None, lengths: Any = None, version: int = 0
) -> pb.InferRequest:
    """The request for one chunk; input is (batch, time, input_size), converted to float32."""
    request = pb.InferRequest(
        model=model, version=version, input=encode_tensor(np.asarray(input, np.float32))
    )
    if lengths is not None:
        request.sequence_lengths.CopyFrom(encode_tensor(np.asarray(lengths, np.int32)))
    if state is not None:
        request.state.CopyFrom(state.to_proto())
    return request


@dataclass(frozen=True)
class InferResult:
    output: np.ndarray  # (batch, time, hidden_sizes[-1]) float32, zero past each row's length
    logits: np.ndarray | None  # (batch, num_outputs) or (batch, time, num_outputs); None without a head
    state: State  # send it back with the next chunk
    model: str
    version: int

    @classmethod
    def from_proto(cls, response: pb.InferResponse) -> InferResult:
        logits = decode_tensor(response.logits, "logits") if response.HasField("logits") else None
        return cls(
            decode_tensor(response.output, "output"),
            logits,
            State.from_proto(response.state),
            response.model,
            response.version,
        )


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    versions: tuple[int, ...]
    input_size: int
    hidden_sizes: tuple[int, ...]
    head: str
    num_outputs: int
    labels: tuple[str, ...]
    fingerprint: str
    quantization: str
    lstmserve_version: str

    @classmethod
    def from_proto(cls, info: pb.ModelInfo) -> ModelInfo:
        return cls(
            info.name,
            info.version,
            tuple(info.versions),
            info.input_size,
            tuple(info.hidden_sizes),
            info.head,
            info.num_outputs,
            tuple(info.labels),
            info.fingerprint,
            info.quantization,
            info.lstmserve_version,
        )
