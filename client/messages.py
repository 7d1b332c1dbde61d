"""Client-side messages: the request for a chunk, and InferResult / ModelInfo decoded from responses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lstmserve.codec import decode_tensor, write_tensor
from lstmserve.limits import RequestLimits
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .state import State


def infer_request(
    model: str,
    input: Any,
    state: State | None = None,
    lengths: Any = None,
    version: int = 0,
    outputs: Sequence[str] | None = None,
) -> pb.InferRequest:
    """The request for one chunk; input is (batch, time, input_size), converted to float32; outputs:
    which of "output", "logits", "state" to send back (None: all)."""
    if isinstance(outputs, str):
        raise TypeError(f'outputs is a list of names, e.g. ["{outputs}"], not a string')
    request = pb.InferRequest(model=model, version=version, outputs=outputs or ())
    write_tensor(request.input, np.asarray(input, np.float32))  # in place: no copy of the bytes
    if lengths is not None:
        write_tensor(request.sequence_lengths, lengths_array(lengths))
    if state is not None:
        state.write_to(request.state)
    return request


def lengths_array(lengths: Any) -> np.ndarray:
    """Per-row lengths as integers: int32, or int64 where a value does not fit (the server then
    refuses it by name; a cast would wrap 2**32 + 2 to 2 and run the wrong steps silently)."""
    array = np.asarray(lengths)
    if array.size == 0:
        return array.astype(np.int32)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got {array.dtype}")
    fits = np.iinfo(np.int32).min <= array.min() and array.max() <= np.iinfo(np.int32).max
    return array.astype(np.int32 if fits else np.int64)


@dataclass(frozen=True)
class InferResult:
    """One chunk's answer. A part not asked for (`outputs`) is None, as are logits without a head."""

    output: np.ndarray | None  # (batch, time, hidden_sizes[-1]) float32, zero past each row's length
    logits: np.ndarray | None  # (batch, num_outputs) or (batch, time, num_outputs)
    state: State | None  # send it back with the next chunk
    model: str
    version: int

    @classmethod
    def from_proto(cls, response: pb.InferResponse) -> InferResult:
        return cls(
            decode_tensor(response.output, "output") if response.HasField("output") else None,
            decode_tensor(response.logits, "logits") if response.HasField("logits") else None,
            State.from_proto(response.state) if response.HasField("state") else None,
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
    accepts_state_from: tuple[str, ...] = ()  # models whose states it also takes (a decoder's encoder)
    provider: str = ""  # the onnxruntime execution provider the server runs it on
    device: str = ""  # where: cpu, or cuda:N
    limits: RequestLimits | None = None  # what one request may ask of the server; None: it did not say

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
            tuple(info.accepts_state_from),
            info.provider,
            info.device,
            RequestLimits.read_from(info.limits) if info.HasField("limits") else None,
        )


def batch_major(input: Any) -> np.ndarray:
    """TF1's time_major=True input, (time, batch, features), as the wire's (batch, time, features)."""
    array = np.asarray(input)
    if array.ndim != 3:
        raise ValueError(
            f"a time-major input must be (time, batch, input_size), got shape {list(array.shape)}"
        )
    return array.swapaxes(0, 1)


def time_major(result: InferResult) -> InferResult:
    """A result with its time axes first, as dynamic_rnn(time_major=True) returns them."""
    output = None if result.output is None else result.output.swapaxes(0, 1)
    logits = result.logits
    if logits is not None and logits.ndim == 3:  # per step; classify_last's have no time axis
        logits = logits.swapaxes(0, 1)
    return replace(result, output=output, logits=logits)
