"""numpy <-> lstmserve.v1 messages: the one place tensors and states are encoded and decoded.

Tensors travel as raw little-endian bytes in C order with their shape, never as repeated floats.
Decoding checks that the bytes fit the shape and dtype, and names the tensor when they do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lstmserve.errors import LstmServeError
from lstmserve.proto.v1 import lstmserve_pb2 as pb

_DTYPES: dict[int, np.dtype] = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.INT32: np.dtype("<i4"),
    pb.INT64: np.dtype("<i8"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_NAMES = {pb.FLOAT32: "float32", pb.INT32: "int32", pb.INT64: "int64"}

LayerArrays = list[tuple[np.ndarray, np.ndarray]]  # per layer (c, h), each (batch, hidden_sizes[l])
MAX_RANK = 8  # no tensor of the contract has more than 3 dimensions
# No real tensor comes near these. numpy refuses a shape whose size overflows even when a zero
# dimension means it holds no values ([0, 2**62, 8]), so such shapes are refused here, by name.
MAX_DIMENSION = 2**31 - 1
MAX_VALUES = 2**40  # the product of the non-zero dimensions


class TensorError(LstmServeError, ValueError):
    """A tensor whose dtype, shape or bytes cannot be decoded; the message names the tensor."""


def encode_tensor(array: np.ndarray) -> pb.Tensor:
    tensor = pb.Tensor()
    write_tensor(tensor, array)
    return tensor


def write_tensor(target: pb.Tensor, array: np.ndarray) -> None:
    """The array into a message's own field. NOTE: built in place, not passed to a constructor or
    CopyFrom: protobuf copies a submessage's bytes each time it is handed over (a 256-row answer of
    the 2x128 model took twice as long to encode)."""
    code = _CODES.get(array.dtype)
    if code is None:  # big-endian, or a dtype the wire does not carry
        code = _CODES.get(array.dtype.newbyteorder("<"))
        if code is None:
            raise TensorError(f"cannot send {array.dtype} tensors: use float32, int32 or int64")
    target.dtype = code
    target.shape[:] = array.shape
    target.data = to_bytes(array, _DTYPES[code])


def to_bytes(array: np.ndarray, dtype: np.dtype) -> bytes:
    """The array as raw bytes of `dtype` (little-endian, C order), for every protocol and the client."""
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def decode_tensor(tensor: pb.Tensor, name: str) -> np.ndarray:
    """The tensor as a read-only numpy array in native byte order."""
    # NOTE: this runs for every tensor of every request: plain Python beats numpy's reductions on
    # the few dimensions a shape has (np.prod alone cost 6 us).
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        # An enum value this build does not know arrives as a bare number (proto3 keeps it).
        known = pb.DataType.Name(tensor.dtype) if tensor.dtype in pb.DataType.values() else tensor.dtype
        raise TensorError(f"{name}: unsupported dtype {known}; use FLOAT32, INT32 or INT64")
    return from_bytes(tensor.data, dtype, tensor.shape, name, _NAMES[tensor.dtype])


def from_bytes(data: bytes, dtype: np.dtype, dims, name: str, dtype_name: str) -> np.ndarray:
    """Raw little-endian bytes as a read-only array of `dims`, for every protocol and the client.

    The shape is checked before anything is made, and the array is a view: no copy, no allocation."""
    shape = check_shape(dims, name)
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise TensorError(
            f"{name}: {len(data)} bytes do not fit shape {list(shape)} of {dtype_name} ({expected} bytes)"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def check_shape(dims, name: str) -> tuple[int, ...]:
    """A wire shape, refused if no tensor could have it."""
    if len(dims) > MAX_RANK:
        raise TensorError(f"{name}: rank {len(dims)}; no tensor here has more than {MAX_RANK} dimensions")
    shape = tuple(dims)
    if any(dim < 0 for dim in shape):
        raise TensorError(f"{name}: shape {list(shape)} has a negative dimension")
    if any(dim > MAX_DIMENSION for dim in shape) or math.prod(d for d in shape if d) > MAX_VALUES:
        raise TensorError(f"{name}: shape {list(shape)} is too large for any tensor")
    return shape


def write_state(target: pb.State, fingerprint: str, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """The layers into a message's own state field, in place (see write_tensor)."""
    target.fingerprint = fingerprint
    del target.layers[:]
    for c, h in layers:
        layer = target.layers.add()
        write_tensor(layer.c, c)
        write_tensor(layer.h, h)


def decode_state(state: pb.State) -> LayerArrays:
    layers = []
    for index, layer in enumerate(state.layers):
        if not layer.HasField("c") or not layer.HasField("h"):
            raise TensorError(f"state.layers[{index}] needs both c and h")
        layers.append(
            (
                decode_tensor(layer.c, f"state.layers[{index}].c"),
                decode_tensor(layer.h, f"state.layers[{index}].h"),
            )
        )
    return layers
