"""A decoded `Request` -> the checked rows to run, with every check a client can fail named in its message.

Every protocol's adapter decodes its wire into a `Request` (server/request.py), and `check` refuses
everything a model could choke on before it reaches onnxruntime: dtypes, ranks, feature size, the
request limits (checked from the shape, before anything is allocated), NaN/Inf, lengths, state
layers and shapes, and a state from another model. A state tensor is named in a refusal as its
protocol names it: `StateTensorError` says which, and the data plane asks the adapter for the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstmserve.codec import LayerArrays

from .auth import EVERY_MODEL, Scope
from .errors import FailedPrecondition, InvalidArgument, quoted
from .limits import Limits
from .repository import ModelRepository
from .request import Request, State
from .runtime import ModelRuntime
from .sealing import StateSeal


@dataclass
class Checked:
    """A request's rows, fit to run: every array the model takes, in no protocol's words."""

    input: np.ndarray  # (batch, time, input_size) float32
    lengths: np.ndarray  # (batch,) int32
    layers: LayerArrays  # the initial state, per layer (c, h)


class StateTensorError(InvalidArgument):
    """One tensor of a sent state does not fit the model; `problem` is the message without its name."""

    def __init__(self, layer: int, part: int, problem: str):
        super().__init__(f"state layer {layer} {'ch'[part]} {problem}")
        self.layer, self.part, self.problem = layer, part, problem


def check(
    request: Request,
    runtime: ModelRuntime,
    repository: ModelRepository,
    limits: Limits,
    held: State | None = None,
    scope: Scope = EVERY_MODEL,
    seal: StateSeal | None = None,
) -> Checked:
    """The request's rows, checked; `held` is a stream's state, used when none is sent."""
    config = runtime.info.config
    name = f"{runtime.info.name} v{runtime.info.version}"
    x = request.input
    if x is None:
        raise InvalidArgument(f"input is missing: send a (batch, time, {config.input_size}) float32 tensor")
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
    limits.check_chunk(batch, time)  # before the lengths and zero state below are made
    _check_finite(x, "input")
    lengths = _lengths(request.sequence_lengths, batch, time)
    if request.state is not None:
        layers = _state(request.state, runtime, repository.by_fingerprint, scope, batch, seal)
    elif held is not None:
        if held.layers[0][0].shape[0] != batch:
            raise InvalidArgument(
                f"this stream holds state for a batch of {held.layers[0][0].shape[0]}; a chunk of batch "
                f"{batch} must bring its own state"
            )
        layers = held.layers
    else:  # absent state means zero state, as zero_state(batch)
        layers = [(np.zeros((batch, size), np.float32),) * 2 for size in config.hidden_sizes]
    return Checked(x, lengths, layers)


def _lengths(lengths: np.ndarray | None, batch: int, time: int) -> np.ndarray:
    if lengths is None:
        return np.full(batch, time, np.int32)  # absent lengths mean full length
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


def _state(
    state: State,
    runtime: ModelRuntime,
    maker_of: Callable[[str, Scope], ModelRuntime | None],
    scope: Scope,
    batch: int,
    seal: StateSeal | None,
) -> LayerArrays:
    info, config = runtime.info, runtime.info.config
    if state.fingerprint != info.fingerprint:
        maker = maker_of(state.fingerprint, scope)  # a model outside the token's scope is not named
        if maker is None or not handed_over(maker, runtime):
            if maker is not None and maker.info.name in info.accepts_state_from:  # declared; sizes differ
                raise FailedPrecondition(
                    f"{info.name} v{info.version} takes states from {maker.info.name} "
                    f"(--accepts-state-from), but this state's maker, {maker.info.name} "
                    f"v{maker.info.version}, has layers {list(maker.info.config.hidden_sizes)} and "
                    f"{info.name} v{info.version} has {list(config.hidden_sizes)}: a state fits only "
                    "a model of the same layer sizes"
                )
            made_by = f"{maker.info.name} v{maker.info.version}" if maker else "a model not served here"
            makers = [name for name in info.accepts_state_from if scope.allows(name)]  # named in scope only
            declared = f"; {info.name} takes states from {', '.join(makers)} too" if makers else ""
            raise FailedPrecondition(
                f"state was made by {made_by} (fingerprint {quoted(state.fingerprint)}), not by {info.name} "
                f"v{info.version} (fingerprint {info.fingerprint}); a state is only valid for the model "
                f"that produced it, or for one exported with --accepts-state-from its maker{declared}"
            )
    layers = _opened(state, config.hidden_sizes, seal)
    if len(layers) != config.num_layers:
        raise InvalidArgument(f"state has {len(layers)} layers; {info.name} has {config.num_layers}")
    for layer, ((c, h), size) in enumerate(zip(layers, config.hidden_sizes)):
        for part, value in enumerate((c, h)):
            if value.dtype != np.float32:
                raise StateTensorError(layer, part, f"must be float32, got {value.dtype}")
            if value.shape != (batch, size):
                raise StateTensorError(
                    layer, part, f"must have shape [{batch}, {size}]; got {list(value.shape)}"
                )
            if not np.isfinite(value).all():
                raise StateTensorError(layer, part, _non_finite(value))
    return layers


def handed_over(maker: ModelRuntime, runtime: ModelRuntime) -> bool:
    """Whether `runtime` takes states made by `maker`: declared at its export, same hidden sizes."""
    return (
        maker.info.name in runtime.info.accepts_state_from
        and maker.info.config.hidden_sizes == runtime.info.config.hidden_sizes
    )


def _opened(state: State, hidden_sizes: tuple[int, ...], seal: StateSeal | None) -> LayerArrays:
    """A state's layers: as sent, or opened by the seal; a server that seals takes sealed states only."""
    if state.sealed:
        if seal is None:
            raise FailedPrecondition(
                "the state is sealed, and this server has no --state-key-file to open it"
            )
        return seal.open(state.fingerprint, state.sealed, hidden_sizes)
    if seal is not None:
        raise FailedPrecondition(
            "this server takes only the sealed states it returns (--state-key-file): send each "
            "response's state back as it came"
        )
    return state.layers


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.isfinite(array).all():
        raise InvalidArgument(f"{name} {_non_finite(array)}")


def _non_finite(array: np.ndarray) -> str:
    return f"holds NaN or Inf values (first at {np.argwhere(~np.isfinite(array))[0].tolist()})"
