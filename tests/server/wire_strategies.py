"""Hypothesis strategies for hostile requests: both protocols' messages, spoiled a few parts at a time,
and raw bytes for every method (tests/server/test_fuzz.py sends them).

Strategies start from a request the server would answer and spoil some of its parts, so examples
reach every check and onnxruntime itself, not only the first refusal. Big payloads (a 1 MiB input, a
900 kB name) are built from a few drawn numbers, so every example stays cheap to draw and to shrink.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf import message_factory, text_format
from google.protobuf.message import Message
from hypothesis import strategies as st

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..conftest import CHARS, DIGITS

MODELS = {CHARS: (5, (12, 7), 2), DIGITS: (8, (16, 8), 1)}  # input_size, hidden_sizes, newest version
X = np.ones((1, 3, 5), np.float32)  # a good chars chunk
INFER, STREAM = "/lstmserve.v1.LSTMService/Infer", "/lstmserve.v1.LSTMService/StreamInfer"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def mostly(usual: st.SearchStrategy, rarely: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy[Any]:
    """`usual`, but one time in `odds` `rarely`; shrinking goes towards `usual`."""
    return st.integers(0, odds - 1).flatmap(lambda n: rarely if n == odds - 1 else usual)


def made_by(model: str, version: int) -> str:
    """A placeholder fingerprint; each test swaps it for the one a real response of that model gave."""
    return f"{{{model}:{version}}}"


class Shown:
    """A drawn value, one line and cut short in failure reports (its payloads reach 1 MiB)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        text = _one_line(self.value)
        return text if len(text) <= 3000 else f"{text[:3000]}... ({len(text)} characters)"


def _one_line(value) -> str:
    if isinstance(value, Message):
        return f"<{type(value).__name__} {text_format.MessageToString(value, as_one_line=True)}>"
    if isinstance(value, list | tuple):
        return f"[{', '.join(map(_one_line, value))}]"
    return repr(value)


@st.composite
def shown(draw, strategy: st.SearchStrategy) -> Shown:
    return Shown(draw(strategy))


# Client text: short and unicode (control characters included), or long: 900 kB, and 1.2 MB of
# UTF-8, which takes the message over the server's 1 MiB limit.
TEXT = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["", "\n", "f00d\nERROR forged", "\x1b[31m\r", "x" * 900_000, "\u00e9" * 600_000]),
)
FINGERPRINTS = st.one_of(st.sampled_from([made_by(CHARS, 1), made_by(CHARS, 2), made_by(DIGITS, 1)]), TEXT)
INT64 = st.integers(-(2**63), 2**63 - 1)
DIMS = st.one_of(st.integers(0, 9), st.sampled_from([2**27, 2**31 - 1, 2**31, 2**62, 2**63 - 1, -1]), INT64)
SHAPES = st.lists(DIMS, max_size=70)
ROWS = mostly(st.sampled_from([1, 2]), st.sampled_from([0, 3, 1024, 1025, 2**27, 2**31 - 1]), odds=4)
# 11865 steps of 2 rows fill an answer to the limit; 60000 steps of 5 floats are a 1.2 MB request.
STEPS = mostly(st.sampled_from([1, 3]), st.sampled_from([0, 16, 1000, 11865, 16384, 16385, 60000]), odds=4)


def fills(dtype: np.dtype) -> st.SearchStrategy:
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "f":  # NaN and +-Inf among the rest
        floats = {2: st.floats(width=16), 4: st.floats(width=32)}.get(dtype.itemsize, st.floats())
        return mostly(st.sampled_from([0.0, 1.0, -0.5]), floats, odds=4)
    bounds = np.iinfo(dtype)  # small values are good lengths
    return mostly(st.integers(0, 3), st.integers(int(bounds.min), int(bounds.max)))


@st.composite
def values(draw, dims: list[int], dtype: np.dtype, most: int = 1 << 20) -> np.ndarray | None:
    """Flat values for `dims` (one of them maybe odd), or None where more than `most` are needed."""
    if any(dim < 0 for dim in dims) or math.prod(dims) > most:
        return None
    array = np.full(math.prod(dims), draw(fills(dtype)), dtype)
    if array.size and draw(st.booleans()):
        array[draw(st.integers(0, array.size - 1))] = draw(fills(dtype))
    return array


@st.composite
def payloads(draw, dims: list[int], dtype: np.dtype) -> bytes:
    """Raw bytes for a tensor of `dims`: its values, a few bytes short or long of them, or junk."""
    array = draw(values(dims, dtype))
    if array is None or draw(st.integers(0, 7)) == 7:
        return draw(st.binary(max_size=64))
    data, cut = array.tobytes(), draw(mostly(st.just(0), st.integers(-9, 9)))
    return data[: len(data) - cut] if cut > 0 else data + bytes(-cut)


# --- lstmserve.v1 -----------------------------------------------------------------------------------

V1_DTYPES: dict[int, np.dtype] = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.INT32: np.dtype("<i4"),
    pb.INT64: np.dtype("<i8"),
}


@st.composite
def v1_tensors(draw, shapes: st.SearchStrategy, dtype: int = pb.FLOAT32) -> pb.Tensor:
    # An enum number this build does not know parses as a bare int (proto3 enums are open).
    other = st.one_of(st.sampled_from(pb.DataType.values()), st.integers(-(2**31), 2**31 - 1))
    code, dims = draw(mostly(st.just(dtype), other)), draw(shapes)
    data = draw(payloads(dims, V1_DTYPES.get(code, V1_DTYPES[dtype])))
    return pb.Tensor(dtype=code, shape=dims, data=data)


@st.composite
def v1_states(draw, hidden: tuple[int, ...], rows: int, fingerprint: str) -> pb.State:
    state = pb.State(fingerprint=draw(mostly(st.just(fingerprint), FINGERPRINTS)))
    for size in draw(mostly(st.just(hidden), st.lists(st.integers(0, 20), max_size=4))):
        layer, shapes = state.layers.add(), mostly(st.just([rows, size]), SHAPES)
        for part in draw(mostly(st.just("ch"), st.sampled_from(["", "c", "h"]))):
            getattr(layer, part).CopyFrom(draw(v1_tensors(shapes)))
    return state


@st.composite
def infer_requests(draw, model: str | None = None) -> pb.InferRequest:
    """A request for chars or digits with some of its parts spoilt."""
    model = model or draw(st.sampled_from(sorted(MODELS)))
    size, hidden, newest = MODELS[model]
    version = draw(mostly(st.integers(0, newest), INT64))
    dims = draw(mostly(st.tuples(ROWS, STEPS, mostly(st.just(size), st.integers(0, 9))).map(list), SHAPES))
    rows = [*dims, 1][0]
    outputs = st.lists(mostly(st.sampled_from(["output", "logits", "state"]), TEXT), max_size=4)
    message = pb.InferRequest(
        model=draw(mostly(st.just(model), TEXT)), version=version, outputs=draw(mostly(st.just([]), outputs))
    )
    if draw(mostly(st.just(True), st.just(False))):
        message.input.CopyFrom(draw(v1_tensors(st.just(dims))))
    if draw(st.booleans()):
        message.sequence_lengths.CopyFrom(draw(v1_tensors(mostly(st.just([rows]), SHAPES), pb.INT32)))
    if draw(st.booleans()):
        message.state.CopyFrom(draw(v1_states(hidden, rows, made_by(model, version or newest))))
    return message


@st.composite
def streams(draw) -> list[pb.InferRequest]:
    """A stream's requests: later ones mostly for the first one's model, often without its name."""
    first = draw(infer_requests())
    rest = draw(st.lists(infer_requests(first.model if first.model in MODELS else CHARS), max_size=3))
    for message in rest:
        if draw(st.booleans()):
            message.ClearField("model")
    return [first, *rest]


# --- KServe v2 --------------------------------------------------------------------------------------

# The protocol's datatypes -> the dtype of their raw bytes and the typed field that carries them.
DATATYPES = {
    "BOOL": ("?", "bool_contents"),
    "UINT8": ("<u1", "uint_contents"),
    "UINT16": ("<u2", "uint_contents"),
    "UINT32": ("<u4", "uint_contents"),
    "UINT64": ("<u8", "uint64_contents"),
    "INT8": ("<i1", "int_contents"),
    "INT16": ("<i2", "int_contents"),
    "INT32": ("<i4", "int_contents"),
    "INT64": ("<i8", "int64_contents"),
    "FP16": ("<f2", "fp32_contents"),  # the protocol has no 16-bit field
    "FP32": ("<f4", "fp32_contents"),
    "FP64": ("<f8", "fp64_contents"),
    "BYTES": ("<u1", "bytes_contents"),
}
# Each typed field, in field-number order (bool, int, int64, uint, uint64, fp32, fp64, bytes) -> the
# dtype of its values (bytes_contents gets one-byte items).
FIELDS = dict(
    zip(
        [field.name for field in kserve.InferTensorContents.DESCRIPTOR.fields],
        map(np.dtype, "? <i4 <i8 <u4 <u8 <f4 <f8 <u1".split()),
    )
)
NAMES = ["input", "sequence_lengths", "initial_c_0", "initial_h_0", "initial_c_1", "initial_h_1"]
OUTPUT_NAMES = ["output", "final_c_0", "final_h_0", "final_c_1", "final_h_1", "logits"]
VERSION_TEXT = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "0", "-1", "01", "1", "2", "3", " 1", "+1", "1_0", "\u00b2", "\u0663", "7" * 5000]),
    st.sampled_from(["9" * 18, "9" * 19, str(2**63), str(2**63 - 1)]),
)
PARAMETERS = st.one_of(
    st.just(kserve.InferParameter()),  # no value at all
    st.booleans().map(lambda v: kserve.InferParameter(bool_param=v)),
    INT64.map(lambda v: kserve.InferParameter(int64_param=v)),
    TEXT.map(lambda v: kserve.InferParameter(string_param=v)),
    st.floats().map(lambda v: kserve.InferParameter(double_param=v)),
    st.integers(0, 2**64 - 1).map(lambda v: kserve.InferParameter(uint64_param=v)),
)
PARAMETER_KEYS = mostly(
    st.sampled_from(["state_fingerprint", "sequence_id", "sequence_start", "sequence_end", "priority"]), TEXT
)
IDS = st.one_of(st.text(max_size=12), st.sampled_from(["\n", "\u20ac" * 150_000, "x" * 300_000]))


@st.composite
def typed_contents(draw, tensor: kserve.ModelInferRequest.InferInputTensor, dims: list[int]) -> None:
    """Typed values for `dims` in the datatype's field (or another), the right count or not."""
    field = DATATYPES.get(tensor.datatype, ("<f4", "fp32_contents"))[1]
    field = draw(mostly(st.just(field), st.sampled_from(sorted(FIELDS))))
    array = draw(values(dims, FIELDS[field], most=1 << 17))  # 1 << 17 floats: a 512 kB message
    if array is None:
        array = np.zeros(draw(st.integers(0, 9)), FIELDS[field])
    extra = draw(mostly(st.just(0), st.integers(-3, 3)))  # values short of or over the shape's count
    array = array[: array.size + extra] if extra < 0 else np.concatenate([array, array[:1].repeat(extra)])
    tensor.contents.SetInParent()  # present, even when empty
    items = [bytes([value]) for value in array.tolist()] if field == "bytes_contents" else array.tolist()
    getattr(tensor.contents, field).extend(items)


@st.composite
def model_infer_requests(draw) -> kserve.ModelInferRequest:
    """A ModelInferRequest for chars or digits, raw or typed, with some of its parts spoilt."""
    model = draw(st.sampled_from(sorted(MODELS)))
    size, hidden, newest = MODELS[model]
    version = draw(mostly(st.sampled_from(["", "1", str(newest)]), VERSION_TEXT))
    rows, steps = draw(ROWS), draw(STEPS)
    contract = {"input": ("FP32", [rows, steps, size]), "sequence_lengths": ("INT32", [rows])}
    for layer, width in enumerate(hidden):
        contract[f"initial_c_{layer}"] = contract[f"initial_h_{layer}"] = ("FP32", [rows, width])
    stateful = draw(st.booleans())
    names = ["input"] + ["sequence_lengths"] * draw(st.booleans()) + NAMES[2:] * stateful
    junk = st.lists(mostly(st.sampled_from([*NAMES, "initial_c_2", "inputs"]), TEXT, odds=3), max_size=7)
    message = kserve.ModelInferRequest(
        model_name=draw(mostly(st.just(model), TEXT)),
        model_version=version,
        id=draw(mostly(st.just(""), IDS)),
    )
    encoding = draw(mostly(st.sampled_from(["raw", "typed"]), st.just("mixed"), odds=6))
    for name in draw(mostly(st.just(names), junk)):
        datatype, dims = contract.get(name, contract["input"])
        if name == "sequence_lengths":
            datatype = draw(st.sampled_from(["INT32", "INT64"]))
        datatype = draw(mostly(st.just(datatype), st.one_of(st.sampled_from(sorted(DATATYPES)), TEXT)))
        dims = draw(mostly(st.just(dims), SHAPES))
        tensor = message.inputs.add(name=name, datatype=datatype, shape=dims)
        if encoding == "raw" or (encoding == "mixed" and draw(st.booleans())):
            dtype = np.dtype(DATATYPES.get(datatype, ("<f4",))[0])
            message.raw_input_contents.append(draw(payloads(dims, dtype)))
        else:
            draw(typed_contents(tensor, dims))
    if draw(mostly(st.just(False), st.just(True))):  # one raw content too many or too few
        if message.raw_input_contents and draw(st.booleans()):
            message.raw_input_contents.pop()
        else:
            message.raw_input_contents.append(b"")
    if stateful:
        made = int(version) if version.isdecimal() and len(version) < 6 else newest
        message.parameters["state_fingerprint"].string_param = made_by(model, made)
    for key, parameter in draw(
        mostly(st.just({}), st.dictionaries(PARAMETER_KEYS, PARAMETERS, max_size=3))
    ).items():
        message.parameters[key].CopyFrom(parameter)
    asked = draw(mostly(st.just([]), st.lists(mostly(st.sampled_from(OUTPUT_NAMES), TEXT), max_size=4)))
    message.outputs.extend(kserve.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in asked)
    return message


def _found() -> dict[str, kserve.ModelInferRequest]:
    """What these tests found once, kept as explicit examples so that it stays fixed."""
    mixed = kserve.ModelInferRequest(model_name=CHARS, raw_input_contents=[b""])
    mixed.inputs.add(name="\n", datatype="FP32", shape=[1, 1, 5]).contents.SetInParent()
    # The answer's room for the id is counted in characters; the id is 3 bytes a character.
    x = np.ones((1, 16384, 5), np.float32)  # (batch, time, input_size): 720 kB of answer
    long_id = kserve.ModelInferRequest(
        model_name=CHARS, id="\u20ac" * 150_000, raw_input_contents=[x.tobytes()]
    )
    long_id.inputs.add(name="input", datatype="FP32", shape=x.shape)
    return {
        "typed contents beside raw ones, under a name with a newline": mixed,
        "an id of 150000 euro signs beside a chunk that fills the answer": long_id,
    }


FOUND = _found()


# --- raw bytes --------------------------------------------------------------------------------------

METHODS = {
    f"/{service.full_name}/{method.name}": method
    for module in (pb, kserve)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}
GOOD = {  # a message each method answers, to cut short and to follow with junk
    "lstmserve.v1.InferRequest": pb.InferRequest(
        model=CHARS, input=pb.Tensor(dtype=pb.FLOAT32, shape=X.shape, data=X.tobytes())
    ),
    "lstmserve.v1.GetModelRequest": pb.GetModelRequest(model=CHARS, version=1),
    "inference.ModelReadyRequest": kserve.ModelReadyRequest(name=CHARS, version="1"),
    "inference.ModelMetadataRequest": kserve.ModelMetadataRequest(name=CHARS),
}
# Field 1 (every request's model name) as invalid UTF-8; map field 4 (ModelInferRequest.parameters)
# entries: empty, with an invalid UTF-8 key, with an empty value.
BAD_FIELDS = [b"\x0a\x02\xc3\x28", b"\x0a\x01\xff", b"\x22\x00", b"\x22\x03\x0a\x01\xff", b"\x22\x02\x12\x00"]


def nested_groups(depth: int, closed: bool) -> bytes:
    """Field 100 as a group in a group in ... `depth` deep (protobuf's recursion limit is 100)."""
    return b"\xa3\x06" * depth + b"\xa4\x06" * depth * closed  # start group 100, end group 100


def garbage(good: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=256),
        st.binary(min_size=1, max_size=64).map(lambda tail: good + tail),
        st.sampled_from(BAD_FIELDS).map(lambda tail: good + tail),
        st.integers(0, max(len(good) - 1, 0)).map(lambda n: good[:n]),
        st.builds(nested_groups, st.sampled_from([10, 99, 100, 101, 1000, 100_000]), st.booleans()),
        st.sampled_from([1 << 20, (1 << 20) + 1]).map(bytes),  # zeros (tag 0 is invalid), then over the limit
    )


@st.composite
def raw_calls(draw) -> tuple[str, list[bytes]]:
    path = draw(st.sampled_from(sorted(METHODS)))
    method = METHODS[path]
    good = GOOD.get(method.input_type.full_name) or message_factory.GetMessageClass(method.input_type)()
    most = 3 if method.client_streaming else 1
    return path, draw(st.lists(garbage(good.SerializeToString()), min_size=1, max_size=most))
