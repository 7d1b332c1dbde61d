"""KServe v2's gRPC adapter (Open Inference Protocol): ModelInferRequest -> `Request`
(server/request.py); `Answer` -> ModelInferResponse. The one place KServe messages are decoded and
encoded; what they share with the REST wire (names, datatypes, the state, the outputs asked for) is
oip.py's.

What is wrong with the wire form (datatype strings, shapes against bytes, names, raw and typed
contents mixed) is refused here; what is wrong for the model (feature size, lengths, NaN, a state
from another model) is refused by validation.py, as for lstmserve.v1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lstmserve import contract
from lstmserve.codec import TensorError, check_shape, from_bytes, to_bytes
from lstmserve.proto.inference import grpc_service_pb2 as kserve

from ..errors import InvalidArgument, quoted
from ..request import Answer, Request
from ..runtime import ModelRuntime
from . import oip
from .oip import FP32, FP32_BYTES, SEALED_STATE, STATE_FINGERPRINT, parse_version

__all__ = ["Infer", "model_metadata", "parse_version", "requested_outputs"]

# The typed-contents field that carries each datatype (FP16 and BYTES-as-numbers have none).
_FIELDS: dict[str, str | None] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP16": None,  # raw only: the protocol has no 16-bit typed field
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class Infer(oip.StateNames):
    """ModelInfer's adapter; `sealed`: the server seals its states, which travel as sealed_state."""

    def __init__(self, sealed: bool = False):
        self.sealed = sealed

    def model_of(self, request: kserve.ModelInferRequest) -> tuple[str, int]:
        return request.model_name, parse_version(request.model_version)

    def decode(self, request: kserve.ModelInferRequest, runtime: ModelRuntime) -> Request:
        """The request's tensors by contract name, checked as wire data."""
        names = requested_outputs(request, runtime, self.sealed)
        parameters = _parameters(request.parameters)
        oip.refuse_server_state(parameters)
        arrays = _arrays(request, runtime)
        return Request(
            input=arrays.get(contract.INPUT),
            wanted=oip.wanted(names, runtime),
            sequence_lengths=arrays.get(contract.SEQUENCE_LENGTHS),
            state=oip.state(arrays, parameters, runtime.info.config.num_layers),
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
        arrays = oip.answer_arrays(answer)
        for name in requested_outputs(request, runtime, self.sealed):
            if name in arrays:
                response.outputs.add(name=name, datatype=FP32, shape=arrays[name].shape)
                response.raw_output_contents.append(to_bytes(arrays[name], FP32_BYTES))
        if answer.state is not None and answer.state.sealed:
            blob = answer.state.sealed
            response.outputs.add(name=SEALED_STATE, datatype="BYTES", shape=[1])
            response.raw_output_contents.append(oip.sealed_raw(blob))
        return response


def requested_outputs(
    request: kserve.ModelInferRequest, runtime: ModelRuntime, sealed: bool = False
) -> list[str]:
    """The contract outputs to compute, in the order asked (oip.requested)."""
    return oip.requested([output.name for output in request.outputs], runtime, sealed)


def _parameters(parameters) -> dict[str, Any]:
    """The request's parameters as plain values (what oip.py reads)."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
        for key, value in parameters.items()
    }


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
    checks = oip.InputChecks(runtime)
    arrays: dict[str, Any] = {}  # numpy arrays, and the sealed state's bytes
    for index, tensor in enumerate(request.inputs):
        checks.check(tensor.name, tensor.datatype)
        if tensor.name == SEALED_STATE:
            arrays[tensor.name] = _sealed(tensor, raw[index] if raw else None)
        else:
            arrays[tensor.name] = _decode(tensor, raw[index] if raw else None)
    return arrays


def _sealed(tensor: kserve.ModelInferRequest.InferInputTensor, raw: bytes | None) -> bytes:
    """The one BYTES element of sealed_state: raw or in bytes_contents."""
    oip.check_sealed_shape(tensor.shape)
    if raw is not None:
        return oip.sealed_from_raw(raw)
    elsewhere = [f.name for f, _ in tensor.contents.ListFields() if f.name != "bytes_contents"]
    if elsewhere:
        raise InvalidArgument(
            f"{SEALED_STATE} is BYTES: its contents go in bytes_contents, not {elsewhere[0]}"
        )
    values = tensor.contents.bytes_contents
    if len(values) != 1:
        raise InvalidArgument(f"{SEALED_STATE}: one element in bytes_contents, not {len(values)}")
    return bytes(values[0])


def _decode(tensor: kserve.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    """One input as a numpy array; its datatype is one lstmserve takes (checked by the caller)."""
    name, datatype = tensor.name, tensor.datatype
    dtype, field = oip.DTYPES[datatype], _FIELDS[datatype]
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
    """oip.metadata as ModelMetadataResponse."""
    fields = oip.metadata(runtime, versions, sealed)
    tensor = kserve.ModelMetadataResponse.TensorMetadata
    return kserve.ModelMetadataResponse(
        name=fields["name"],
        versions=fields["versions"],
        platform=fields["platform"],
        inputs=[tensor(**spec) for spec in fields["inputs"]],
        outputs=[tensor(**spec) for spec in fields["outputs"]],
    )
