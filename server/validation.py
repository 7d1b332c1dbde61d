"""A request -> the onnxruntime feed, with every check a client can fail named in its message.

Everything a model could choke on is refused here, before it reaches onnxruntime: dtypes, ranks,
feature size, byte counts, NaN/Inf, lengths, state layers and shapes, and a state from another model.
"""

from __future__ import annotations

import numpy as np

from lstmserve import contract
from lstmserve.codec import LayerArrays, TensorError, decode_state, decode_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import FailedPrecondition, InvalidArgument
from .repository import ModelRepository
from .runtime import ModelRuntime

Feed = dict[str, np.ndarray]


def feed_from_request(
    request: pb.InferRequest,
    runtime: ModelRuntime,
    repository: ModelRepository,
    held: LayerArrays | None = None,
) -> Feed:
    """The checked feed; `held` is a stream's server-side state, used when the request sends none."""
    config = runtime.info.config
    name = f"{runtime.info.name} v{runtime.info.version}"
    if not request.HasField("input"):
        raise InvalidArgument(f"input is missing: send a (batch, time, {config.input_size}) float32 tensor")
    x = _decode(request.input, "input")
    if x.dtype != np.float32:
        raise InvalidArgument(f"input must be float32, got {x.dtype}")
    if x.ndim != 3:
        raise InvalidArgument(
            f"input must have rank 3, (batch, time, {config.input_size}); got shape {list(x.shape)}"
        )
    batch, time, features = x.shape
    if features != config.input_size:
        raise InvalidArgument(f"input has {features} features per step; {name} takes {config.input_size}")
    if batch == 0:
        raise InvalidArgument("input has an empty batch: send at least one row")
    _check_finite(x, "input")
    feed: Feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: _lengths(request, batch, time)}

    if request.HasField("state"):
        layers = _state(request.state, runtime, repository, batch)
    elif held is not None:
        if held[0][0].shape[0] != batch:
            raise InvalidArgument(
                f"this stream holds state for a batch of {held[0][0].shape[0]}; a chunk of batch {batch} "
                "must bring its own state"
            )
        layers = held
    else:  # absent state means zero state, as zero_state(batch)
        layers = [(np.zeros((batch, size), np.float32),) * 2 for size in config.hidden_sizes]
    for layer, (c, h) in enumerate(layers):
        feed[contract.initial_c(layer)], feed[contract.initial_h(layer)] = c, h
    return feed


def _lengths(request: pb.InferRequest, batch: int, time: int) -> np.ndarray:
    if not request.HasField("sequence_lengths"):
        return np.full(batch, time, np.int32)  # absent lengths mean full length
    lengths = _decode(request.sequence_lengths, "sequence_lengths")
    if lengths.dtype.kind != "i":
        raise InvalidArgument(f"sequence_lengths must be int32 (or int64), got {lengths.dtype}")
    if lengths.shape != (batch,):
        raise InvalidArgument(
            f"sequence_lengths must have one value per row, shape [{batch}]; got {list(lengths.shape)}"
        )
    bad = np.flatnonzero((lengths < 0) | (lengths > time))
    if bad.size:
        raise InvalidArgument(
            f"sequence_lengths must be in [0, {time}] (the chunk's time); row {bad[0]} has {lengths[bad[0]]}"
        )
    return lengths.astype(np.int32)


def _state(state: pb.State, runtime: ModelRuntime, repository: ModelRepository, batch: int) -> LayerArrays:
    info, config = runtime.info, runtime.info.config
    if not state.fingerprint:
        raise InvalidArgument("state.fingerprint is empty: send back the state a response returned")
    if state.fingerprint != info.fingerprint:
        maker = repository.by_fingerprint(state.fingerprint)
        made_by = f"{maker.info.name} v{maker.info.version}" if maker else "a model not served here"
        raise FailedPrecondition(
            f"state was made by {made_by} (fingerprint {state.fingerprint}), not by {info.name} "
            f"v{info.version} (fingerprint {info.fingerprint}); a state is only valid for the model "
            "that produced it"
        )
    try:
        layers = decode_state(state)
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None
    if len(layers) != config.num_layers:
        raise InvalidArgument(f"state has {len(layers)} layers; {info.name} has {config.num_layers}")
    for index, ((c, h), size) in enumerate(zip(layers, config.hidden_sizes)):
        for part, value in (("c", c), ("h", h)):
            where = f"state.layers[{index}].{part}"
            if value.dtype != np.float32:
                raise InvalidArgument(f"{where} must be float32, got {value.dtype}")
            if value.shape != (batch, size):
                raise InvalidArgument(f"{where} must have shape [{batch}, {size}]; got {list(value.shape)}")
            _check_finite(value, where)
    return layers


def _decode(tensor: pb.Tensor, name: str) -> np.ndarray:
    try:
        return decode_tensor(tensor, name)
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.isfinite(array).all():
        first = np.argwhere(~np.isfinite(array))[0].tolist()
        raise InvalidArgument(f"{name} holds NaN or Inf values (first at {first})")
