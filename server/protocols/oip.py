"""The Open Inference Protocol (KServe v2) in no transport's words: what gRPC's adapter (kserve.py)
and HTTP's (rest.py) share, so the two say the same things about the same tensors.

A model's tensors keep their ONNX contract names on these wires: `input`, `sequence_lengths`,
`initial_c_{l}`, `initial_h_{l}` in; `output`, `final_c_{l}`, `final_h_{l}`, `logits` out. The
fingerprint that stamps a state travels as the string parameter `state_fingerprint`; with
--state-key-file the state travels as one BYTES element, `sealed_state`, instead. Parameters reach
this module as plain values (str, int, float, bool) by name, whichever wire carried them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lstmserve import contract
from lstmserve.layout import VERSION_DIGITS

from ..errors import InvalidArgument, quoted
from ..request import Answer, State, Wanted
from ..runtime import ModelRuntime

STATE_FINGERPRINT = "state_fingerprint"  # request and response parameter
SEALED_STATE = "sealed_state"  # with --state-key-file: the state as one BYTES element, in and out
PLATFORM = "onnxruntime_onnx"  # as Triton names ONNX models served by onnxruntime
PATH_VERSION = "the path's version"  # what REST calls a version, in messages (gRPC: model_version)
FP32 = "FP32"
FP32_BYTES = np.dtype("<f4")
# Triton's sequence batcher keeps state on the server, keyed by these; lstmserve keeps none, so a
# client that sends them expects what it would not get: refuse rather than answer from zero state.
_SERVER_STATE_PARAMETERS = ("sequence_id", "sequence_start", "sequence_end")

# Every datatype the protocol names -> its numpy dtype (little-endian). FP16 is raw only (no typed
# gRPC field); BYTES has none. Named so that the error says "not taken here" rather than "unknown".
DTYPES: dict[str, np.dtype | None] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    FP32: FP32_BYTES,
    "FP64": np.dtype("<f8"),
    "BYTES": None,
}


def input_datatypes(runtime: ModelRuntime) -> dict[str, tuple[str, ...]]:
    """Each input the model takes -> the datatypes accepted for it (the first is the advertised one)."""
    accepted: dict[str, tuple[str, ...]] = {
        contract.INPUT: (FP32,),
        contract.SEQUENCE_LENGTHS: ("INT32", "INT64"),
    }
    for layer in range(runtime.info.config.num_layers):
        accepted[contract.initial_c(layer)] = accepted[contract.initial_h(layer)] = (FP32,)
    accepted[SEALED_STATE] = ("BYTES",)  # refused by validation where the server does not seal
    return accepted


def input_shapes(runtime: ModelRuntime) -> dict[str, list[int]]:
    """Each input's shape as ModelMetadata gives it: -1 for batch and time, which are any size."""
    config = runtime.info.config
    shapes = {contract.INPUT: [-1, -1, config.input_size], contract.SEQUENCE_LENGTHS: [-1]}
    for layer, size in enumerate(config.hidden_sizes):
        shapes[contract.initial_c(layer)] = shapes[contract.initial_h(layer)] = [-1, size]
    return shapes


def output_shapes(runtime: ModelRuntime) -> dict[str, list[int]]:
    """Each output's shape, in the model's output order; all are FP32."""
    config = runtime.info.config
    shapes = {contract.OUTPUT: [-1, -1, config.hidden_sizes[-1]]}
    for layer, size in enumerate(config.hidden_sizes):
        shapes[contract.final_c(layer)] = shapes[contract.final_h(layer)] = [-1, size]
    if config.head == "classify_last":
        shapes[contract.LOGITS] = [-1, config.num_outputs]
    elif config.head == "per_step":
        shapes[contract.LOGITS] = [-1, -1, config.num_outputs]
    return shapes


def metadata(runtime: ModelRuntime, versions: list[int], sealed: bool = False) -> dict[str, Any]:
    """ModelMetadata's fields: the tensors with datatypes and shapes (-1 where any size goes), and the
    versions; with `sealed`, the state as the one sealed_state tensor each way, not initial_*/final_*."""
    datatypes = input_datatypes(runtime)
    state = ("initial_", "final_")
    inputs = [
        {"name": name, "datatype": datatypes[name][0], "shape": shape}
        for name, shape in input_shapes(runtime).items()
        if not (sealed and name.startswith(state))
    ]
    outputs = [
        {"name": name, "datatype": FP32, "shape": shape}
        for name, shape in output_shapes(runtime).items()
        if not (sealed and name.startswith(state))
    ]
    if sealed:
        inputs.append({"name": SEALED_STATE, "datatype": "BYTES", "shape": [1]})
        outputs.append({"name": SEALED_STATE, "datatype": "BYTES", "shape": [1]})
    return {
        "name": runtime.info.name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
    }


class StateNames:
    """How the OIP wires name a sent state's tensors in messages (gRPC and REST alike)."""

    def state_name(self, layer: int, part: int, sealed: bool) -> str:
        if sealed:
            return SEALED_STATE
        return contract.initial_h(layer) if part else contract.initial_c(layer)


def sealed_raw(blob: bytes) -> bytes:
    """sealed_state's one BYTES element in its raw form: a 4-byte little-endian length, then the bytes."""
    return struct.pack("<I", len(blob)) + blob


def sealed_from_raw(raw: bytes) -> bytes:
    """The sealed bytes from sealed_raw's form."""
    if len(raw) < 4 or struct.unpack_from("<I", raw)[0] != len(raw) - 4:
        raise InvalidArgument(f"{SEALED_STATE}: raw BYTES must be a 4-byte length and that many bytes")
    return bytes(raw[4:])


def check_sealed_shape(shape: Sequence[int]) -> None:
    if list(shape) != [1]:
        raise InvalidArgument(f"{SEALED_STATE} must have shape [1]; got {list(shape)[:8]}")


class InputChecks:
    """The checks every input passes before its contents are read: a name the model takes, given
    once, with a datatype the protocol knows and the model takes for it."""

    def __init__(self, runtime: ModelRuntime):
        self.accepted = input_datatypes(runtime)
        self.model = f"{runtime.info.name} v{runtime.info.version}"
        self.seen: set[str] = set()

    def check(self, name: str, datatype: str) -> None:
        if name not in self.accepted:
            raise InvalidArgument(
                f"unknown input {quoted(name)}: {self.model} takes {', '.join(self.accepted)}"
            )
        if name in self.seen:
            raise InvalidArgument(f"input {name!r} is given twice")
        self.seen.add(name)
        if datatype not in DTYPES:
            raise InvalidArgument(
                f"{name}: unknown datatype {quoted(datatype)}; the protocol's are {', '.join(DTYPES)}"
            )
        if datatype not in self.accepted[name]:
            raise InvalidArgument(
                f"{name} has datatype {datatype}; {self.model} takes {' or '.join(self.accepted[name])}"
            )


def refuse_server_state(parameters: Mapping[str, Any]) -> None:
    for key in _SERVER_STATE_PARAMETERS:
        if key in parameters:
            raise InvalidArgument(
                f"parameter {key!r}: lstmserve keeps no state between calls; send each response's "
                "final_c_*/final_h_* back as initial_c_*/initial_h_* with its state_fingerprint parameter"
            )


def state(arrays: Mapping[str, Any], parameters: Mapping[str, Any], num_layers: int) -> State | None:
    """The state sent: every initial_c_*/initial_h_*, or sealed_state, or none (zero state)."""
    names = [(contract.initial_c(layer), contract.initial_h(layer)) for layer in range(num_layers)]
    sent = [name for pair in names for name in pair if name in arrays]
    if SEALED_STATE in arrays:
        if sent:
            raise InvalidArgument(f"send {SEALED_STATE} or initial_c_*/initial_h_*, not both")
        return State(_fingerprint(parameters, SEALED_STATE), [], sealed=arrays[SEALED_STATE])
    if not sent:
        return None
    missing = [name for pair in names for name in pair if name not in arrays]
    if missing:
        raise InvalidArgument(
            f"state inputs come together: got {', '.join(sent)} but not {', '.join(missing)}; "
            "send every initial_c_*/initial_h_* (a response's final_c_*/final_h_*), or none for "
            "zero state"
        )
    return State(_fingerprint(parameters), [(arrays[c], arrays[h]) for c, h in names])


def _fingerprint(parameters: Mapping[str, Any], sent: str = "initial_c_*/initial_h_*") -> str:
    if STATE_FINGERPRINT not in parameters:
        raise InvalidArgument(
            f"{sent} sent without the state_fingerprint parameter: send back the state_fingerprint of "
            "the response that returned the state"
        )
    value = parameters[STATE_FINGERPRINT]
    if not isinstance(value, str) or not value:
        raise InvalidArgument("parameter state_fingerprint must be a non-empty string (string_param)")
    return value


def requested(asked: list[str], runtime: ModelRuntime, sealed: bool = False) -> list[str]:
    """The contract outputs to compute for the output names asked, in that order; none asked means
    all, in the model's order. With `sealed`, the state is offered as sealed_state only (which
    stands for every final_*)."""
    finals = [name for name in runtime.output_names if name.startswith("final_")]
    offered = [name for name in runtime.output_names if not (sealed and name in finals)]
    if sealed:
        offered.append(SEALED_STATE)
    if not asked:
        return list(runtime.output_names)
    for name in asked:
        if name not in offered:
            raise InvalidArgument(
                f"unknown output {quoted(name)}: {runtime.info.name} v{runtime.info.version} returns "
                f"{', '.join(offered)}"
            )
    if len(set(asked)) != len(asked):
        raise InvalidArgument(f"an output is asked for twice: {', '.join(asked)}")
    return [expanded for name in asked for expanded in (finals if name == SEALED_STATE else [name])]


def wanted(names: list[str], runtime: ModelRuntime) -> Wanted:
    """The contract output names asked for, as a `Wanted`."""
    finals = {
        name: (layer, part)
        for layer in range(runtime.info.config.num_layers)
        for part, name in enumerate((contract.final_c(layer), contract.final_h(layer)))
    }
    return Wanted(
        contract.OUTPUT in names, contract.LOGITS in names, tuple(finals[n] for n in names if n in finals)
    )


def answer_arrays(answer: Answer) -> dict[str, np.ndarray]:
    """An answer's unsealed tensors by their contract names."""
    arrays = {}
    if answer.output is not None:
        arrays[contract.OUTPUT] = answer.output
    if answer.logits is not None:
        arrays[contract.LOGITS] = answer.logits
    if answer.state is not None:
        for layer, (c, h) in enumerate(answer.state.layers):
            arrays[contract.final_c(layer)], arrays[contract.final_h(layer)] = c, h
    return arrays


def parse_version(version: str, field: str = "model_version") -> int:
    """A request's version string: empty means the newest (0); otherwise a positive integer."""
    if not version:
        return 0
    # ASCII digits only (str.isdigit also takes "²"), and few of them: int() of a long string is slow.
    if len(version) > VERSION_DIGITS or not version.isascii() or not version.isdigit() or int(version) < 1:
        raise InvalidArgument(
            f"{field} must be a positive integer of at most {VERSION_DIGITS} digits, or empty for the "
            f"newest; got {quoted(version)}"
        )
    return int(version)
