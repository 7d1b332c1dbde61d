"""KServe v2's adapter (Open Inference Protocol): ModelInferRequest -> `Request` (server/request.py);
`Answer` -> ModelInferResponse. The one place KServe messages are decoded and encoded.

A model's tensors keep their ONNX contract names on this wire too: `input`, `sequence_lengths`,
`initial_c_{l}`, `initial_h_{l}` in; `output`, `final_c_{l}`, `final_h_{l}`, `logits` out. The
fingerprint that stamps a state travels as the string parameter `state_fingerprint`. What is wrong
with the wire form (datatype strings, shapes against bytes, names, raw and typed contents mixed) is
refused here; what is wrong for the model (feature size, lengths, NaN, a state from another model)
is refused by validation.py, as for lstmserve.v1.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from lstmserve import contract
from lstmserve.codec import TensorError, check_shape, from_bytes, to_bytes
from lstmserve.layout import VERSION_DIGITS
from lstmserve.proto.inference import grpc_service_pb2 as kserve

from ..errors import InvalidArgument, quoted
from ..request import Answer, Request, State, Wanted
from ..runtime import ModelRuntime

STATE_FINGERPRINT = "state_fingerprint"  # request and response parameter
SEALED_STATE = "sealed_state"  # with --state-key-file: the state as one BYTES element, in and out
PLATFORM = "onnxruntime_onnx"  # as Triton names ONNX models served by onnxruntime
# Triton's sequence batcher keeps state on the server, keyed by these; lstmserve keeps none, so a
# client that sends them expects what it would not get: refuse rather than answer from zero state.
_SERVER_STATE_PARAMETERS = ("sequence_id", "sequence_start", "sequence_end")

# Every datatype the protocol names -> (numpy dtype, the typed-contents field that carries it).
# FP16 and BYTES have no dtype/field pair lstmserve could take; they are named so the error says
# "not taken here" rather than "unknown".
_DATATYPES: dict[str, tuple[np.dtype | None, str | None]] = {
    "BOOL": (np.dtype(np.bool_), "bool_contents"),
    "UINT8": (np.dtype("<u1"), "uint_contents"),
    "UINT16": (np.dtype("<u2"), "uint_contents"),
    "UINT32": (np.dtype("<u4"), "uint_contents"),
    "UINT64": (np.dtype("<u8"), "uint64_contents"),
    "INT8": (np.dtype("<i1"), "int_contents"),
    "INT16": (np.dtype("<i2"), "int_contents"),
    "INT32": (np.dtype("<i4"), "int_contents"),
    "INT64": (np.dtype("<i8"), "int64_contents"),
    "FP16": (np.dtype("<f2"), None),  # raw only: the protocol has no 16-bit typed field
    "FP32": (np.dtype("<f4"), "fp32_contents"),
    "FP64": (np.dtype("<f8"), "fp64_contents"),
    "BYTES": (None, "bytes_contents"),
}
_FP32 = "FP32"
_FP32_BYTES = np.dtype("<f4")


def input_datatypes(runtime: ModelRuntime) -> dict[str, tuple[str, ...]]:
    """Each input the model takes -> the datatypes accepted for it (the first is the advertised one)."""
    accepted: dict[str, tuple[str, ...]] = {
        contract.INPUT: (_FP32,),
        contract.SEQUENCE_LENGTHS: ("INT32", "INT64"),
    }
    for layer in range(runtime.info.config.num_layers):
        accepted[contract.initial_c(layer)] = accepted[contract.initial_h(layer)] = (_FP32,)
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


class Infer:
    """ModelInfer's adapter; `sealed`: the server seals its states, which travel as sealed_state."""

    def __init__(self, sealed: bool = False):
        self.sealed = sealed

    def model_of(self, request: kserve.ModelInferRequest) -> tuple[str, int]:
        return request.model_name, parse_version(request.model_version)

    def state_name(self, layer: int, part: int, sealed: bool) -> str:
        if sealed:
            return SEALED_STATE
        return contract.initial_h(layer) if part else contract.initial_c(layer)

    def decode(self, request: kserve.ModelInferRequest, runtime: ModelRuntime) -> Request:
        """The request's tensors by contract name, checked as wire data."""
        names = requested_outputs(request, runtime, self.sealed)
        for key in _SERVER_STATE_PARAMETERS:
            if key in request.parameters:
                raise InvalidArgument(
                    f"parameter {key!r}: lstmserve keeps no state between calls; send each response's "
                    "final_c_*/final_h_* back as initial_c_*/initial_h_* with its state_fingerprint parameter"
                )
        arrays = _arrays(request, runtime)
        return Request(
            input=arrays.get(contract.INPUT),
            wanted=_wanted(names, runtime),
            sequence_lengths=arrays.get(contract.SEQUENCE_LENGTHS),
            state=_state(request, arrays, runtime.info.config.num_layers),
            echoed_bytes=len(request.id.encode()),  # the answer carries the request's id back, as UTF-8
        )

    def encode(
        self, request: kserve.ModelInferRequest, runtime: ModelRuntime, answer: Answer
    ) -> kserve.ModelInferResponse:
        """The outputs asked for, in the order asked, as raw little-endian bytes, with the state's
        fingerprint as a parameter; a sealed state travels as one sealed_state instead of final_*."""
        response = kserve.ModelInferResponse(
            model_name=runtime.info.name, model_version=str(runtime.info.version), id=request.id
        )
        response.parameters[STATE_FINGERPRINT].string_param = runtime.info.fingerprint
        arrays = _answer_arrays(answer)
        for name in requested_outputs(request, runtime, self.sealed):
            if name in arrays:
                response.outputs.add(name=name, datatype=_FP32, shape=arrays[name].shape)
                response.raw_output_contents.append(to_bytes(arrays[name], _FP32_BYTES))
        if answer.state is not None and answer.state.sealed:
            blob = answer.state.sealed
            response.outputs.add(name=SEALED_STATE, datatype="BYTES", shape=[1])
            response.raw_output_contents.append(struct.pack("<I", len(blob)) + blob)  # BYTES' raw form
        return response


def _state(request: kserve.ModelInferRequest, arrays: dict[str, Any], num_layers: int) -> State | None:
    """The state sent: every initial_c_*/initial_h_*, or sealed_state, or none (zero state)."""
    names = [(contract.initial_c(layer), contract.initial_h(layer)) for layer in range(num_layers)]
    sent = [name for pair in names for name in pair if name in arrays]
    if SEALED_STATE in arrays:
        if sent:
            raise InvalidArgument(f"send {SEALED_STATE} or initial_c_*/initial_h_*, not both")
        return State(_fingerprint(request, SEALED_STATE), [], sealed=arrays[SEALED_STATE])
    if not sent:
        return None
    missing = [name for pair in names for name in pair if name not in arrays]
    if missing:
        raise InvalidArgument(
            f"state inputs come together: got {', '.join(sent)} but not {', '.join(missing)}; "
            "send every initial_c_*/initial_h_* (a response's final_c_*/final_h_*), or none for "
            "zero state"
        )
    return State(_fingerprint(request), [(arrays[c], arrays[h]) for c, h in names])


def _wanted(names: list[str], runtime: ModelRuntime) -> Wanted:
    """The contract output names asked for, as a `Wanted`."""
    finals = {
        name: (layer, part)
        for layer in range(runtime.info.config.num_layers)
        for part, name in enumerate((contract.final_c(layer), contract.final_h(layer)))
    }
    return Wanted(
        contract.OUTPUT in names, contract.LOGITS in names, tuple(finals[n] for n in names if n in finals)
    )


def _answer_arrays(answer: Answer) -> dict[str, np.ndarray]:
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


def _arrays(request: kserve.ModelInferRequest, runtime: ModelRuntime) -> dict[str, Any]:
    """Each input by name, its datatype one the model takes, its contents raw or typed (not both)."""
    raw = request.raw_input_contents
    if raw:
        typed = [tensor.name for tensor in request.inputs if tensor.HasField("contents")]
        if typed:
            raise InvalidArgument(
                f"raw_input_contents and typed contents mixed: with raw_input_contents set, no input may "
                f"carry contents, but {quoted(typed[0], 40)} does; send every input one way"
            )
        if len(raw) != len(request.inputs):
            raise InvalidArgument(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one per input, "
                "in the order of inputs"
            )
    accepted = input_datatypes(runtime)
    model = f"{runtime.info.name} v{runtime.info.version}"
    arrays: dict[str, Any] = {}  # numpy arrays, and the sealed state's bytes
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if name not in accepted:
            raise InvalidArgument(f"unknown input {quoted(name)}: {model} takes {', '.join(accepted)}")
        if name in arrays:
            raise InvalidArgument(f"input {name!r} is given twice")
        if tensor.datatype not in _DATATYPES:
            raise InvalidArgument(
                f"{name}: unknown datatype {quoted(tensor.datatype)}; "
                f"the protocol's are {', '.join(_DATATYPES)}"
            )
        if tensor.datatype not in accepted[name]:
            raise InvalidArgument(
                f"{name} has datatype {tensor.datatype}; {model} takes {' or '.join(accepted[name])}"
            )
        if name == SEALED_STATE:
            arrays[name] = _sealed(tensor, raw[index] if raw else None)
        else:
            arrays[name] = _decode(tensor, raw[index] if raw else None)
    return arrays


def requested_outputs(
    request: kserve.ModelInferRequest, runtime: ModelRuntime, sealed: bool = False
) -> list[str]:
    """The contract outputs to compute, in the order asked; none asked means all, in the model's
    order. With `sealed`, the state is offered as sealed_state only (which stands for every final_*)."""
    state = [name for name in runtime.output_names if name.startswith("final_")]
    offered = [name for name in runtime.output_names if not (sealed and name in state)]
    if sealed:
        offered.append(SEALED_STATE)
    if not request.outputs:
        return list(runtime.output_names)
    names = [output.name for output in request.outputs]
    for name in names:
        if name not in offered:
            raise InvalidArgument(
                f"unknown output {quoted(name)}: {runtime.info.name} v{runtime.info.version} returns "
                f"{', '.join(offered)}"
            )
    if len(set(names)) != len(names):
        raise InvalidArgument(f"an output is asked for twice: {', '.join(names)}")
    return [expanded for name in names for expanded in (state if name == SEALED_STATE else [name])]


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


def _fingerprint(request: kserve.ModelInferRequest, sent: str = "initial_c_*/initial_h_*") -> str:
    if STATE_FINGERPRINT not in request.parameters:
        raise InvalidArgument(
            f"{sent} sent without the state_fingerprint parameter: send back the state_fingerprint of "
            "the response that returned the state"
        )
    parameter = request.parameters[STATE_FINGERPRINT]
    if parameter.WhichOneof("parameter_choice") != "string_param" or not parameter.string_param:
        raise InvalidArgument("parameter state_fingerprint must be a non-empty string (string_param)")
    return parameter.string_param


def _sealed(tensor: kserve.ModelInferRequest.InferInputTensor, raw: bytes | None) -> bytes:
    """The one BYTES element of sealed_state: raw (a 4-byte little-endian length, then the bytes) or
    in bytes_contents."""
    if list(tensor.shape) != [1]:
        raise InvalidArgument(f"{SEALED_STATE} must have shape [1]; got {list(tensor.shape)[:8]}")
    if raw is None:
        elsewhere = [f.name for f, _ in tensor.contents.ListFields() if f.name != "bytes_contents"]
        if elsewhere:
            raise InvalidArgument(
                f"{SEALED_STATE} is BYTES: its contents go in bytes_contents, not {elsewhere[0]}"
            )
        values = tensor.contents.bytes_contents
        if len(values) != 1:
            raise InvalidArgument(f"{SEALED_STATE}: one element in bytes_contents, not {len(values)}")
        return bytes(values[0])
    if len(raw) < 4 or struct.unpack_from("<I", raw)[0] != len(raw) - 4:
        raise InvalidArgument(f"{SEALED_STATE}: raw BYTES must be a 4-byte length and that many bytes")
    return bytes(raw[4:])


def _decode(tensor: kserve.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    """One input as a numpy array; its datatype is one lstmserve takes (checked by the caller)."""
    name, datatype = tensor.name, tensor.datatype
    dtype, field = _DATATYPES[datatype]
    assert dtype is not None and field is not None  # the datatypes lstmserve takes have both
    try:
        if raw is not None:
            return from_bytes(raw, dtype, tensor.shape, name, datatype)
        shape = check_shape(tensor.shape, name)
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None
    count = math.prod(shape)
    elsewhere = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
    if elsewhere:
        raise InvalidArgument(
            f"{name} is {datatype}, so its contents go in {field}, not {', '.join(elsewhere)}"
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"{name}: {len(values)} values in {field} do not fit shape {list(shape)} ({count} values)"
        )
    return np.array(values, dtype=dtype).reshape(shape)


def model_metadata(
    runtime: ModelRuntime, versions: list[int], sealed: bool = False
) -> kserve.ModelMetadataResponse:
    """The model's tensors with datatypes and shapes (-1 where any size goes), and its versions; with
    `sealed`, the state as the one sealed_state tensor each way, not initial_*/final_*."""
    tensor = kserve.ModelMetadataResponse.TensorMetadata
    datatypes = input_datatypes(runtime)
    state = ("initial_", "final_")
    inputs = [
        tensor(name=name, datatype=datatypes[name][0], shape=shape)
        for name, shape in input_shapes(runtime).items()
        if not (sealed and name.startswith(state))
    ]
    outputs = [
        tensor(name=name, datatype=_FP32, shape=shape)
        for name, shape in output_shapes(runtime).items()
        if not (sealed and name.startswith(state))
    ]
    if sealed:
        inputs.append(tensor(name=SEALED_STATE, datatype="BYTES", shape=[1]))
        outputs.append(tensor(name=SEALED_STATE, datatype="BYTES", shape=[1]))
    return kserve.ModelMetadataResponse(
        name=runtime.info.name,
        versions=[str(version) for version in versions],
        platform=PLATFORM,
        inputs=inputs,
        outputs=outputs,
    )
