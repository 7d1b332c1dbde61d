"""The Open Inference Protocol's REST adapter: an infer request's JSON (and, with Triton's binary tensor
data extension, the raw tensors after it) -> `Request`; `Answer` -> the same. What it shares with the
gRPC wire (names, datatypes, the state, the outputs asked for) is oip.py's.

    body = JSON header [+ binary tensors]     Inference-Header-Content-Length: the header's bytes
    input  {"name", "datatype", "shape", "data": [...]}  or  {..., "parameters": {"binary_data_size": n}}
    output {"name", "parameters": {"binary_data": true}}  (or the request's "binary_data_output": true)

JSON numbers round-trip float32 exactly: the answer writes each value's shortest float32 form, which
any JSON parser reads back to the same float32. sealed_state is BYTES; in JSON its one element is
the sealed bytes in base64 (JSON strings hold text, not bytes), in binary it is Triton's raw BYTES
form (a 4-byte little-endian length, then the bytes), as over gRPC.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import orjson

from lstmserve import contract
from lstmserve.codec import TensorError, check_shape, from_bytes, to_bytes

from ..errors import InvalidArgument, quoted
from ..request import Answer, Request
from ..runtime import ModelRuntime
from . import oip
from .oip import FP32, FP32_BYTES, SEALED_STATE, STATE_FINGERPRINT, parse_version

BINARY_DATA_SIZE = "binary_data_size"
_NUMBER_KINDS = {"FP32": "iuf", "INT32": "iu", "INT64": "iu"}  # numpy kinds JSON data may parse to


@dataclass
class InferCall:
    """One REST infer request as received: the model its path names, its JSON header parsed, and the
    bytes after the header (the binary tensors; empty without the extension)."""

    model: str
    version: str
    header: dict[str, Any]
    binary: memoryview

    # Read from the header when first asked (decode's checks keep their order), then kept for encode.
    @cached_property
    def parameters(self) -> dict[str, Any]:
        return object_of(self.header.get("parameters", {}), "parameters")

    @cached_property
    def outputs(self) -> dict[str, bool | None]:
        """The outputs asked for, in order -> binary or not as asked (None: the request's default)."""
        return _outputs(self.header)


@dataclass
class Body:
    """An answer's body: `data`, and the length of its JSON header where binary tensors follow it."""

    data: bytes
    header_length: int | None = None

    @property
    def content_type(self) -> str:
        return "application/json" if self.header_length is None else "application/octet-stream"


def parse(body: bytes, header_length: int | None, model: str, version: str) -> InferCall:
    """The body as JSON header and binary rest; the header must be a JSON object."""
    if header_length is None:
        header_length = len(body)  # (the edge has checked that a header length fits the body)
    view = memoryview(body)
    header = loads(view[:header_length], "the request")
    if not isinstance(header, dict):
        raise InvalidArgument('the request must be a JSON object with "inputs"')
    return InferCall(model, version, header, view[header_length:])


def timeout_of(call: InferCall) -> float | None:
    """The request's `timeout` parameter (Triton's, in microseconds; what tritonclient.http's
    infer(timeout=) sends) in seconds: the call's deadline, as gRPC's is. None or 0: none."""
    timeout = call.parameters.get("timeout")
    if timeout is None:
        return None
    if type(timeout) is not int or timeout < 0:
        raise InvalidArgument("parameter timeout must be a whole number of microseconds (0: none)")
    return timeout / 1e6 if timeout else None


def loads(data: bytes | memoryview, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not JSON: {quoted(str(exc), 120)}") from None


class Infer(oip.StateNames):
    """The REST infer adapter; `sealed`: the server seals its states, which travel as sealed_state."""

    def __init__(self, sealed: bool = False):
        self.sealed = sealed

    def model_of(self, call: InferCall) -> tuple[str, int]:
        return call.model, parse_version(call.version, oip.PATH_VERSION)

    def decode(self, call: InferCall, runtime: ModelRuntime) -> Request:
        header, parameters = call.header, call.parameters
        oip.refuse_server_state(parameters)
        names = oip.requested(list(call.outputs), runtime, self.sealed)
        request_id = header.get("id", "")
        if not isinstance(request_id, str):
            raise InvalidArgument('"id" must be a string')
        arrays = arrays_of(header, call.binary, runtime)
        # The parsed JSON values (several Python objects per number) are arrays now: drop them, so
        # they do not live on while the call waits for its batch (encode needs only the outputs).
        del header["inputs"]
        return Request(
            input=arrays.get(contract.INPUT),
            wanted=oip.wanted(names, runtime),
            sequence_lengths=arrays.get(contract.SEQUENCE_LENGTHS),
            state=oip.state(arrays, parameters, runtime.info.config.num_layers),
            echoed_bytes=len(request_id.encode()),
        )

    def encode(self, call: InferCall, runtime: ModelRuntime, answer: Answer) -> Body:
        """The outputs asked for, in the order asked, each as JSON data or as binary after the header."""
        response, binaries = self.response(call, runtime, answer)
        json = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        if not binaries:
            return Body(json)
        return Body(b"".join([json, *binaries]), len(json))

    def response(
        self, call: InferCall, runtime: ModelRuntime, answer: Answer
    ) -> tuple[dict[str, Any], list[bytes]]:
        """The answer's JSON header (numpy arrays for its data), and the binary outputs after it."""
        default = bool(call.parameters.get("binary_data_output"))
        asked = call.outputs
        arrays = oip.answer_arrays(answer)
        outputs: list[dict[str, Any]] = []
        binaries: list[bytes] = []
        for name in oip.requested(list(asked), runtime, self.sealed):
            if name not in arrays:
                continue
            array = np.ascontiguousarray(arrays[name], dtype=FP32_BYTES)
            tensor: dict[str, Any] = {"name": name, "datatype": FP32, "shape": list(array.shape)}
            if _binary(asked, name, default, self.sealed):
                binaries.append(to_bytes(array, FP32_BYTES))
                tensor["parameters"] = {BINARY_DATA_SIZE: len(binaries[-1])}
            else:
                tensor["data"] = array.ravel()  # orjson writes each float32's shortest exact form
            outputs.append(tensor)
        if answer.state is not None and answer.state.sealed:
            blob = answer.state.sealed
            tensor = {"name": SEALED_STATE, "datatype": "BYTES", "shape": [1]}
            if _binary(asked, SEALED_STATE, default, self.sealed):
                binaries.append(oip.sealed_raw(blob))
                tensor["parameters"] = {BINARY_DATA_SIZE: len(binaries[-1])}
            else:
                tensor["data"] = [base64.b64encode(blob).decode()]
            outputs.append(tensor)
        response: dict[str, Any] = {
            "model_name": runtime.info.name,
            "model_version": str(runtime.info.version),
            "parameters": {STATE_FINGERPRINT: runtime.info.fingerprint},
            "outputs": outputs,
        }
        if call.header.get("id"):
            response["id"] = call.header["id"]
        return response, binaries


def _binary(asked: dict[str, bool | None], name: str, default: bool, sealed: bool) -> bool:
    """Whether an output goes as binary: as asked for it (a sealed state's, as sealed_state's), or
    else as the request's binary_data_output says."""
    binary = asked.get(SEALED_STATE if sealed and name.startswith("final_") else name)
    return default if binary is None else binary


def object_of(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f'"{what}" must be a JSON object')
    return value


def _outputs(header: dict[str, Any]) -> dict[str, bool | None]:
    """InferCall.outputs, checked."""
    outputs = header.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidArgument('"outputs" must be a list')
    asked: dict[str, bool | None] = {}
    for output in outputs:
        output = object_of(output, "outputs[]")
        name = output.get("name")
        if not isinstance(name, str):
            raise InvalidArgument('each output needs a "name" string')
        if name in asked:
            raise InvalidArgument(f"an output is asked for twice: {quoted(name)}")
        parameters = object_of(output.get("parameters", {}), "outputs[].parameters")
        unknown = [key for key in parameters if key != "binary_data"]
        if unknown:  # Triton's classification would change what the output holds: refuse, not ignore
            raise InvalidArgument(f"output {quoted(name)}: parameter {quoted(unknown[0])} is not taken")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidArgument(f"output {quoted(name)}: binary_data must be true or false")
        asked[name] = binary
    return asked


def arrays_of(header: dict[str, Any], binary: memoryview, runtime: ModelRuntime) -> dict[str, Any]:
    """Each input by name (numpy arrays, and the sealed state's bytes), from its JSON data or from its
    slice of the binary data, which the inputs' binary_data_size must cover exactly."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument('"inputs" must be a list of tensors')
    checks = oip.InputChecks(runtime)
    arrays: dict[str, Any] = {}
    offset = 0
    for tensor in inputs:
        tensor = object_of(tensor, "inputs[]")
        name, datatype = tensor.get("name"), tensor.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidArgument('each input needs "name" and "datatype" strings')
        checks.check(name, datatype)
        shape = _shape(tensor.get("shape"), name)
        size = object_of(tensor.get("parameters", {}), f"{name}.parameters").get(BINARY_DATA_SIZE)
        if size is not None:
            if type(size) is not int or not 0 <= size <= len(binary) - offset:
                raise InvalidArgument(
                    f"{name}: binary_data_size {quoted(str(size), 30)} does not fit the "
                    f"{len(binary) - offset} bytes of binary data left"
                )
            raw, offset = binary[offset : offset + size], offset + size
            arrays[name] = _from_raw(raw, shape, name, datatype)
        elif "data" in tensor:
            arrays[name] = _from_json(tensor["data"], shape, name, datatype)
        else:
            raise InvalidArgument(f'{name}: give its "data", or binary_data_size and the bytes')
    if offset != len(binary):
        raise InvalidArgument(
            f"{len(binary)} bytes follow the JSON header but the inputs' binary_data_size add up to {offset}"
        )
    return arrays


def _shape(dims: Any, name: str) -> tuple[int, ...]:
    if not isinstance(dims, list) or any(type(dim) is not int for dim in dims):
        raise InvalidArgument(f'{name}: "shape" must be a list of integers')
    try:
        return check_shape(dims, name)
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None


def _from_raw(raw: memoryview, shape: tuple[int, ...], name: str, datatype: str) -> Any:
    if name == SEALED_STATE:
        oip.check_sealed_shape(shape)
        return oip.sealed_from_raw(bytes(raw))
    dtype = oip.DTYPES[datatype]
    assert dtype is not None  # the numeric datatypes lstmserve takes
    try:
        return from_bytes(raw, dtype, shape, name, datatype)  # type: ignore[arg-type]  # a view: no copy
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None


def _from_json(data: Any, shape: tuple[int, ...], name: str, datatype: str) -> Any:
    """JSON data, flat or nested in the shape's order, as an array of the datatype. Its size is checked
    against the shape before numpy reads it; its values must be numbers of the datatype's kind."""
    if name == SEALED_STATE:
        oip.check_sealed_shape(shape)
        if not (isinstance(data, list) and len(data) == 1 and isinstance(data[0], str)):
            raise InvalidArgument(f"{SEALED_STATE}: data must be one base64 string")
        try:
            return base64.b64decode(data[0], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"{SEALED_STATE}: data must be one base64 string") from None
    count = math.prod(shape)
    if not isinstance(data, list) or len(data) not in (count, shape[0] if shape else 1):
        raise InvalidArgument(f"{name}: data must be a list of {count} numbers (shape {list(shape)})")
    if not _numbers(data, len(shape)):
        raise InvalidArgument(
            f"{name}: data must be {count} {datatype} numbers, flat or nested as shape {list(shape)}"
        )
    try:
        values = np.array(data)
    except (ValueError, OverflowError, TypeError):  # ragged, or nested deeper than numpy goes
        values = None
    dtype = oip.DTYPES[datatype]
    assert dtype is not None
    fits = values is not None and values.size == count and (values.ndim == 1 or values.shape == shape)
    if not fits or (count and values.dtype.kind not in _NUMBER_KINDS[datatype]):  # type: ignore[union-attr]
        raise InvalidArgument(
            f"{name}: data must be {count} {datatype} numbers, flat or nested as shape {list(shape)}"
        )
    assert values is not None
    if (
        dtype.kind == "i"
        and count
        and (values.min() < np.iinfo(dtype).min or values.max() > np.iinfo(dtype).max)
    ):
        raise InvalidArgument(f"{name}: a value is out of {datatype}'s range")
    with np.errstate(over="ignore"):  # float32 overflow is inf, which validation refuses by name
        return values.astype(dtype).reshape(shape)


def _numbers(data: list, rank: int) -> bool:
    """Whether `data` is numbers, flat or in lists nested no deeper than a shape of `rank`: checked
    before numpy reads it, which makes strings one array of (elements x the longest string)
    characters: 2.4 GB from a 300 kB string beside 2000 empty ones."""
    leaves: list = data
    for _ in range(rank - 1):
        kinds = set(map(type, leaves))
        if kinds != {list}:
            return kinds <= {int, float}  # bool is not int here: type(True) is bool
        leaves = list(itertools.chain.from_iterable(leaves))
    return set(map(type, leaves)) <= {int, float}
