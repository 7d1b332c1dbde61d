"""The Open Inference Protocol over HTTP/REST, on the session's server (the same process, data plane and
models as its gRPC port): every endpoint's answer, and the state carried between calls exactly as
over KServe gRPC, in JSON and in binary tensor data, bit for bit."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from lstmserve.model.data import load_dataset
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from ..conftest import CHARS, DIGITS
from .rest_calls import bits, infer, model_path, post_infer, session

LAYERS = 2  # both test models: initial_c_0, initial_h_0, initial_c_1, initial_h_1


@pytest.fixture(scope="module")
def http(server):
    with session() as made:
        yield made, server.http_url


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield kserve_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Six real digits the session's model never saw: it trained on the dataset's first 300."""
    data, _ = load_dataset("digits")
    return data.inputs[-6:]  # (batch, time, input_size): each pixel row is one step


def test_server_metadata_names_the_extensions(http):
    session, url = http
    answer = session.get(f"{url}/v2", timeout=5)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    metadata = answer.json()
    assert metadata["name"] == "lstmserve" and metadata["version"]
    assert {"binary_tensor_data", "parameters"} <= set(metadata["extensions"])


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_is_200_with_an_empty_body(http, path):
    session, url = http
    answer = session.get(url + path, timeout=5)
    assert (answer.status_code, answer.content) == (200, b"")


def grpc_metadata(stub, name: str, version: str = "") -> dict:
    """ModelMetadata over KServe gRPC, in the REST answer's JSON form."""
    reply = stub.ModelMetadata(kserve.ModelMetadataRequest(name=name, version=version), timeout=5)

    def tensors(specs) -> list[dict]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    return {
        "name": reply.name,
        "versions": list(reply.versions),
        "platform": reply.platform,
        "inputs": tensors(reply.inputs),
        "outputs": tensors(reply.outputs),
    }


@pytest.mark.parametrize(("model", "version"), [(CHARS, ""), (CHARS, "1"), (CHARS, "2"), (DIGITS, "")])
def test_model_metadata_is_grpcs(http, stub, model, version):
    session, url = http
    answer = session.get(url + model_path(model, version), timeout=5)
    assert answer.status_code == 200
    assert answer.json() == grpc_metadata(stub, model, version)
    if model == CHARS:  # what the comparison stands on: both versions, and chars' shapes
        assert answer.json()["versions"] == ["1", "2"]
        assert answer.json()["outputs"][-1] == {"name": "logits", "datatype": "FP32", "shape": [-1, -1, 4]}


@pytest.mark.parametrize(
    ("model", "version", "status"),
    [(CHARS, "", 200), (CHARS, "1", 200), (CHARS, "2", 200), (CHARS, "3", 400), ("nope", "", 400)],
)
def test_model_ready_answers_with_its_status_alone(http, stub, model, version, status):
    """Not ready is the answer 400, with no error in the body: asking about a model is no mistake."""
    session, url = http
    answer = session.get(f"{url}{model_path(model, version)}/ready", timeout=5)
    assert (answer.status_code, answer.content) == (status, b"")
    ready = stub.ModelReady(kserve.ModelReadyRequest(name=model, version=version), timeout=5).ready
    assert ready is (status == 200)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v1/models", "no such route"),
        ("/v1/models/digits", "no such route"),
        ("/v2/models/digits/explain", "no such route"),
        ("/v2/models/nope", "unknown model 'nope' (served: chars, digits)"),
        ("/v2/models/chars/versions/7", "model 'chars' has no version 7 (served: [1, 2])"),
    ],
)
def test_unknown_routes_and_models_are_404(http, path, words):
    session, url = http
    answer = session.get(url + path, timeout=5)
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
    assert words in answer.json()["error"]


@pytest.mark.parametrize(("model", "version"), [("nope", ""), (CHARS, "7")])
def test_infer_on_an_unknown_model_or_version_is_404(http, model, version):
    answer = post_infer(*http, model, {"input": np.zeros((1, 1, 5), np.float32)}, version=version)
    assert answer.status_code == 404 and "served:" in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v2/health/live", "GET"),
        ("DELETE", "/v2", "GET"),
        ("POST", "/v2/models/digits", "GET"),
        ("GET", "/v2/models/digits/infer", "POST"),
        ("PUT", "/v2/models/digits/versions/1/infer", "POST"),
        ("GET", "/v2/models/chars/generate_stream", "POST"),
    ],
)
def test_a_wrong_method_is_405_with_allow(http, method, path, allow):
    session, url = http
    answer = session.request(method, url + path, timeout=5)
    assert answer.status_code == 405 and answer.headers["allow"] == allow
    assert f"use {allow}" in answer.json()["error"]


def test_head_gives_gets_headers_without_the_body(http):
    session, url = http
    for path in ("/v2", model_path(DIGITS), "/v2/health/live"):
        got, head = session.get(url + path, timeout=5), session.head(url + path, timeout=5)
        assert head.status_code == got.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(got.content))


def test_a_bad_version_in_the_path_is_400(http):
    session, url = http
    for path in ("/v2/models/chars/versions/latest", "/v2/models/chars/versions/0/ready"):
        answer = session.get(url + path, timeout=5)
        assert answer.status_code == 400 and "version must be a positive integer" in answer.json()["error"]


def stream_rows(session, url, x: np.ndarray, binary: bool):
    """x fed one step per call, each call's final_* fed back as the next's initial_* with its
    state_fingerprint, as a stateless client streams; the answers, in order."""
    answers, state, fingerprint = [], {}, None
    for step in range(x.shape[1]):
        answer = infer(
            session,
            url,
            DIGITS,
            {"input": x[:, step : step + 1], **state},
            binary=binary,
            fingerprint=fingerprint,
        )
        answers.append(answer)
        state, fingerprint = answer.state(), answer.fingerprint
    return answers


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_digits_streamed_row_by_row_equal_one_grpc_call_bit_for_bit(http, client, digits, binary):
    session, url = http
    whole = client.infer(DIGITS, digits)  # one lstmserve.v1 call over gRPC: every row at once
    answers = stream_rows(session, url, digits, binary)
    assert len(answers) == digits.shape[1] and all(a.fingerprint == whole.state.fingerprint for a in answers)
    output = np.concatenate([answer.arrays["output"] for answer in answers], axis=1)
    np.testing.assert_array_equal(bits(output), bits(whole.output))
    np.testing.assert_array_equal(bits(answers[-1].arrays["logits"]), bits(whole.logits))
    for layer, (c, h) in enumerate(whole.state.layers):
        np.testing.assert_array_equal(bits(answers[-1].arrays[f"final_c_{layer}"]), bits(c))
        np.testing.assert_array_equal(bits(answers[-1].arrays[f"final_h_{layer}"]), bits(h))
    # The state did carry: the first row alone is not the whole digit.
    assert not np.array_equal(answers[0].arrays["logits"], whole.logits)


def test_every_json_float_reads_back_as_the_binary_forms_bits(http, digits):
    """The same request answered in JSON and in binary: each number of the JSON text, parsed as a
    double and rounded to float32 (what any JSON client does), has the binary answer's bits."""
    session, url = http
    tensors = {"input": digits[:, :5]}
    as_json = post_infer(session, url, DIGITS, tensors)
    as_binary = infer(session, url, DIGITS, tensors, binary=True)
    outputs = json.loads(as_json.content)["outputs"]  # stdlib json: doubles
    assert [o["name"] for o in outputs] == list(as_binary.arrays)
    for tensor in outputs:
        values = np.array(tensor["data"], np.float64).astype(np.float32).reshape(tensor["shape"])
        np.testing.assert_array_equal(bits(values), bits(as_binary.arrays[tensor["name"]]))
    assert all(len(o["data"]) for o in outputs)  # there were numbers to compare


F32 = np.finfo(np.float32)
_EDGES = [F32.max, F32.tiny, F32.smallest_subnormal, F32.eps, 0.0, 2.5e-39]  # 2.5e-39: a subnormal
EXTREMES = np.array(_EDGES + [-v for v in _EDGES] + [1 / 3, 0.1, 16777215.0, 1 + F32.eps], np.float32)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_extreme_float32_values_survive_a_state_round_trip(http, binary):
    """A row of zero steps keeps its initial state: what goes in as initial_* comes back as final_*,
    so every extreme float32 (largest, subnormals, -0.0, ...) crosses the wire both ways unchanged."""
    session, url = http
    rows = 2
    first = infer(session, url, CHARS, {"input": np.zeros((rows, 1, 5), np.float32)}, version="1")
    sizes = [first.arrays[f"final_c_{layer}"].shape[1] for layer in range(LAYERS)]  # (12, 7)
    rng = np.random.default_rng(11)
    state = {
        f"initial_{part}_{layer}": rng.choice(EXTREMES, (rows, size)).astype(np.float32)
        for layer, size in enumerate(sizes)
        for part in "ch"
    }
    state["initial_c_0"].reshape(-1)[: len(EXTREMES)] = EXTREMES  # each of them, at least once (a view)
    tensors = {"input": np.ones((rows, 1, 5), np.float32), "sequence_lengths": np.zeros(rows, np.int32)}
    answer = infer(
        session, url, CHARS, {**tensors, **state}, version="1", binary=binary, fingerprint=first.fingerprint
    )
    for name, sent in state.items():
        np.testing.assert_array_equal(bits(answer.state()[name]), bits(sent))
