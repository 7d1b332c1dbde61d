"""KServe v2 / Open Inference Protocol on the lstmserve port, driven with the generated stubs: health,
metadata, raw and typed contents, versions, and each bad request's status and message."""

import grpc
import numpy as np
import pytest

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from ..conftest import CHARS, DIGITS

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
X = np.random.default_rng(3).standard_normal((2, 4, 5)).astype(np.float32)  # a chars chunk
STATE = ["initial_c_0", "initial_h_0", "initial_c_1", "initial_h_1"]
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield kserve_grpc.GRPCInferenceServiceStub(channel)


def request(model=CHARS, version="2", raw=True, fingerprint=None, **tensors) -> kserve.ModelInferRequest:
    """A ModelInferRequest of numpy arrays, as raw_input_contents or as typed contents."""
    message = kserve.ModelInferRequest(model_name=model, model_version=version)
    for name, array in tensors.items():
        tensor = message.inputs.add(name=name, datatype=DATATYPES[array.dtype], shape=array.shape)
        if raw:
            message.raw_input_contents.append(array.tobytes())
        else:
            field = {"FP32": "fp32_contents", "INT32": "int_contents", "INT64": "int64_contents"}
            getattr(tensor.contents, field[tensor.datatype]).extend(array.ravel().tolist())
    if fingerprint is not None:
        message.parameters["state_fingerprint"].string_param = fingerprint
    return message


def outputs(response: kserve.ModelInferResponse) -> dict[str, np.ndarray]:
    return {
        tensor.name: np.frombuffer(data, np.float32).reshape(tensor.shape)
        for tensor, data in zip(response.outputs, response.raw_output_contents)
    }


def state_of(response) -> dict[str, np.ndarray]:
    arrays = outputs(response)
    return {name: arrays[name.replace("initial", "final")] for name in STATE}


def test_live_ready_and_server_metadata(stub):
    assert stub.ServerLive(kserve.ServerLiveRequest()).live
    assert stub.ServerReady(kserve.ServerReadyRequest()).ready
    metadata = stub.ServerMetadata(kserve.ServerMetadataRequest())
    assert metadata.name == "lstmserve" and "parameters" in metadata.extensions


@pytest.mark.parametrize(
    "name, version, ready",
    [(CHARS, "", True), (CHARS, "1", True), (CHARS, "2", True), (CHARS, "3", False), ("nope", "", False)],
)
def test_model_ready_per_version(stub, name, version, ready):
    assert stub.ModelReady(kserve.ModelReadyRequest(name=name, version=version)).ready is ready


def test_model_metadata_names_every_version_and_the_per_step_logits(stub):
    metadata = stub.ModelMetadata(kserve.ModelMetadataRequest(name=CHARS))
    assert list(metadata.versions) == ["1", "2"] and metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs][:2] == [
        ("input", "FP32", [-1, -1, 5]),
        ("sequence_lengths", "INT32", [-1]),
    ]
    assert (metadata.outputs[-1].name, list(metadata.outputs[-1].shape)) == ("logits", [-1, -1, 4])


def test_raw_and_typed_contents_give_the_same_outputs(stub):
    lengths = np.array([4, 2], np.int64)
    raw = stub.ModelInfer(request(input=X, sequence_lengths=lengths))
    typed = stub.ModelInfer(request(raw=False, input=X, sequence_lengths=lengths))
    assert raw.model_name == CHARS and raw.model_version == "2"
    for name, value in outputs(raw).items():
        np.testing.assert_array_equal(outputs(typed)[name], value)
    assert not outputs(raw)["output"][1, 2:].any()  # zero past row 1's length


def test_state_fed_back_continues_the_sequence(stub):
    whole = stub.ModelInfer(request(input=X))
    first = stub.ModelInfer(request(input=X[:, :1]))
    fingerprint = first.parameters["state_fingerprint"].string_param
    rest = stub.ModelInfer(request(input=X[:, 1:], fingerprint=fingerprint, **state_of(first)))
    chunked = np.concatenate([outputs(first)["output"], outputs(rest)["output"]], axis=1)
    np.testing.assert_allclose(chunked, outputs(whole)["output"], atol=1e-6, rtol=0)
    for name, value in state_of(whole).items():
        np.testing.assert_allclose(state_of(rest)[name], value, atol=1e-6, rtol=0)


def test_newest_version_when_none_is_named(stub):
    assert stub.ModelInfer(request(version="", input=X)).model_version == "2"


@pytest.fixture(scope="module")
def v1_state(stub):
    response = stub.ModelInfer(request(version="1", input=X))
    return state_of(response), response.parameters["state_fingerprint"].string_param


def tensor_request(**edit) -> kserve.ModelInferRequest:
    """A good raw request for chars v2 whose `input` tensor has the fields in `edit` changed."""
    message = request(input=X)
    for field, value in edit.items():
        if field == "shape":
            message.inputs[0].ClearField("shape")
            message.inputs[0].shape.extend(value)
        else:
            setattr(message.inputs[0], field, value)
    return message


def no_bytes(message: kserve.ModelInferRequest) -> kserve.ModelInferRequest:
    message.raw_input_contents[0] = b""
    return message


def mixed() -> kserve.ModelInferRequest:
    message = request(input=X)
    lengths = message.inputs.add(name="sequence_lengths", datatype="INT32", shape=[2])
    lengths.contents.int_contents.extend([4, 4])
    return message


def typed_in_wrong_field() -> kserve.ModelInferRequest:
    message = request(raw=False, input=X)
    message.inputs[0].contents.ClearField("fp32_contents")
    message.inputs[0].contents.fp64_contents.extend(X.ravel().tolist())
    return message


def with_parameter(message, key, **value) -> kserve.ModelInferRequest:
    message.parameters[key].CopyFrom(kserve.InferParameter(**value))
    return message


def asking_for(*names) -> kserve.ModelInferRequest:
    message = request(input=X)
    for name in names:
        message.outputs.add(name=name)
    return message


CASES = {
    "wrong datatype string": (
        lambda s: tensor_request(datatype="FLOAT32"),
        INVALID,
        "input: unknown datatype 'FLOAT32'; the protocol's are BOOL, UINT8",
    ),
    "datatype lstmserve does not take": (
        lambda s: request(input=np.ones((2, 4, 5), np.int64)),
        INVALID,
        "input has datatype INT64; chars v2 takes FP32",
    ),
    "shape not matching the bytes": (
        lambda s: tensor_request(shape=[2, 4, 6]),
        INVALID,
        "input: 160 bytes do not fit shape [2, 4, 6] of FP32 (192 bytes)",
    ),
    "typed values not matching the shape": (
        lambda s: _typed_short(),
        INVALID,
        "input: 30 values in fp32_contents do not fit shape [2, 4, 5] (40 values)",
    ),
    "negative dimension": (lambda s: tensor_request(shape=[2, -4, 5]), INVALID, "has a negative dimension"),
    "unknown input name": (
        lambda s: request(input=X, inputs=X),
        INVALID,
        "unknown input 'inputs': chars v2 takes input, sequence_lengths, initial_c_0, initial_h_0",
    ),
    "duplicate input": (lambda s: _twice(), INVALID, "input 'input' is given twice"),
    "missing input": (
        lambda s: request(sequence_lengths=np.array([4, 4], np.int32)),
        INVALID,
        "input is missing",
    ),
    "raw and typed contents mixed": (
        lambda s: mixed(),
        INVALID,
        "raw_input_contents and typed contents mixed",
    ),
    "raw contents of the wrong count": (
        lambda s: _extra_raw(),
        INVALID,
        "2 raw_input_contents for 1 inputs",
    ),
    "typed contents in the wrong field": (
        lambda s: typed_in_wrong_field(),
        INVALID,
        "input is FP32, so its contents go in fp32_contents, not fp64_contents",
    ),
    "wrong feature size (the shared checks)": (
        lambda s: request(input=np.ones((1, 3, 4), np.float32)),
        INVALID,
        "input has 4 features per step; chars v2 takes 5",
    ),
    "NaN (the shared checks)": (
        lambda s: request(input=np.full((1, 2, 5), np.nan, np.float32)),
        INVALID,
        "input holds NaN or Inf values (first at [0, 0, 0])",
    ),
    "half a state": (
        lambda s: request(input=X, fingerprint=s[1], initial_c_0=s[0]["initial_c_0"]),
        INVALID,
        "state inputs come together: got initial_c_0 but not initial_h_0, initial_c_1, initial_h_1",
    ),
    "state without its fingerprint": (
        lambda s: request(input=X, **s[0]),
        INVALID,
        "sent without the state_fingerprint parameter",
    ),
    "fingerprint not a string": (
        lambda s: with_parameter(request(input=X, **s[0]), "state_fingerprint", int64_param=5),
        INVALID,
        "parameter state_fingerprint must be a non-empty string",
    ),
    "state of the wrong shape": (
        lambda s: request(input=X, fingerprint=s[1], **{**s[0], "initial_h_1": np.zeros((2, 6), np.float32)}),
        PRECONDITION,  # the fingerprint is checked first: v1's state is refused before its shapes
        "state was made by chars v1",
    ),
    "state from another version": (
        lambda s: request(input=X, fingerprint=s[1], **s[0]),
        PRECONDITION,
        "state was made by chars v1 (fingerprint",
    ),
    "Triton sequence parameters": (
        lambda s: with_parameter(request(input=X), "sequence_id", int64_param=7),
        INVALID,
        "parameter 'sequence_id': lstmserve keeps no state between calls",
    ),
    "unknown output": (lambda s: asking_for("probabilities"), INVALID, "unknown output 'probabilities'"),
    "output asked twice": (lambda s: asking_for("logits", "logits"), INVALID, "an output is asked for twice"),
    "malformed version": (
        lambda s: request(version="latest", input=X),
        INVALID,
        "model_version must be a positive integer of at most 18 digits, or empty for the newest; "
        "got 'latest'",
    ),
    "a unicode digit as version": (
        lambda s: request(version="\u00b2", input=X),
        INVALID,
        "model_version must be a positive integer of at most 18 digits",
    ),
    "a version of 5000 digits": (
        lambda s: request(version="7" * 5000, input=X),
        INVALID,
        "got '777",
    ),
    "a zero beside a huge dimension": (
        lambda s: tensor_request(shape=[0, 2**62, 5]),
        INVALID,
        "input: shape [0, 4611686018427387904, 5] is too large for any tensor",
    ),
    "rank over 64": (
        lambda s: tensor_request(shape=[1] * 70),
        INVALID,
        "input: rank 70; no tensor here has more",
    ),
    "rows over the limit": (
        lambda s: no_bytes(tensor_request(shape=[2**27, 0, 5])),
        INVALID,
        "input has 134217728 rows; a request may carry at most 1024 (--max-request-rows)",
    ),
    "an answer over the message limit": (
        lambda s: request(input=np.ones((2, 16000, 5), np.float32)),
        INVALID,
        "over the server's message limit of 1048576 (--max-message-bytes): send at most",
    ),
    "unknown model": (
        lambda s: request(model="nope", input=X),
        NOT_FOUND,
        "unknown model 'nope' (served: chars, digits)",
    ),
    "a model name of 500 kB": (
        lambda s: request(model="m\n" * 250_000, input=X),
        NOT_FOUND,
        "unknown model 'm\\nm\\n",
    ),
    "unknown version": (
        lambda s: request(version="7", input=X),
        NOT_FOUND,
        "model 'chars' has no version 7 (served: [1, 2])",
    ),
}


def _typed_short() -> kserve.ModelInferRequest:
    message = request(raw=False, input=X)
    del message.inputs[0].contents.fp32_contents[30:]
    return message


def _twice() -> kserve.ModelInferRequest:
    message = request(input=X)
    message.inputs.add().CopyFrom(message.inputs[0])
    message.raw_input_contents.append(X.tobytes())
    return message


def _extra_raw() -> kserve.ModelInferRequest:
    message = request(input=X)
    message.raw_input_contents.append(b"")
    return message


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_its_status_and_a_clear_message(stub, v1_state, case):
    build, code, message = CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(build(v1_state))
    assert caught.value.code() == code
    assert message in caught.value.details()
    assert len(caught.value.details()) < 400 and "\n" not in caught.value.details()  # short, escaped
    assert stub.ModelInfer(request(input=X)).outputs  # and the server keeps serving


@pytest.mark.parametrize("rpc", ["ModelMetadata", "ModelReady"])
@pytest.mark.parametrize("version", ["two", "\u00b2", "9" * 5000, "-1", "0"])
def test_malformed_version_in_metadata_and_ready(stub, rpc, version):
    message = getattr(kserve, f"{rpc}Request")(name=CHARS, version=version)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, rpc)(message)
    assert caught.value.code() == INVALID and "version must be a positive integer" in caught.value.details()
    assert len(caught.value.details()) < 300


def test_model_metadata_of_an_unknown_model(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(kserve.ModelMetadataRequest(name="nope"))
    assert caught.value.code() == NOT_FOUND and "unknown model 'nope'" in caught.value.details()


def test_digits_answers_over_both_protocols_alike(stub, client):
    x = np.ones((1, 3, 8), np.float32)
    kserve_logits = outputs(stub.ModelInfer(request(model=DIGITS, version="", input=x)))["logits"]
    np.testing.assert_array_equal(kserve_logits, client.infer(DIGITS, x).logits)
