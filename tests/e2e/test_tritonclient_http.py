"""tritonclient.http, a real third-party Open Inference Protocol client, unmodified, against the
server's HTTP port: health and metadata, real digits streamed one pixel row per call with the state
fed back (binary tensor data, its default, and JSON), equal bit for bit to one call of lstmserve's
gRPC client; sealed states as Triton BYTES; the server's errors as tritonclient reports them.

Unlike tritonclient.grpc (test_tritonclient.py), the HTTP client shares this process with the
server's stubs: it has no protobuf messages of its own."""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest

from lstmserve.model.data import load_dataset
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer

triton = pytest.importorskip(
    "tritonclient.http", reason="pip install tritonclient[http] (the dev extra has it)"
)
from tritonclient.utils import InferenceServerException  # noqa: E402  (after the skip)

LAYERS = 2


@pytest.fixture(scope="module")
def triton_client(server):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=20)
    yield client
    client.close()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Six real digits the session's model never saw: it trained on the dataset's first 300."""
    data, _ = load_dataset("digits")
    return data.inputs[-6:]  # (batch, time, input_size): a pixel row per step


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, np.float32).view(np.uint32)


def tensor(name: str, value: np.ndarray, binary: bool) -> triton.InferInput:
    made = triton.InferInput(name, list(value.shape), "BYTES" if value.dtype == object else "FP32")
    made.set_data_from_numpy(value, binary_data=binary)
    return made


def infer(client, model: str, x: np.ndarray, state: dict, fingerprint: str | None, binary: bool, names=()):
    inputs = [tensor("input", x, binary)] + [tensor(name, value, binary) for name, value in state.items()]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names] or None
    parameters = {"state_fingerprint": fingerprint} if fingerprint else None
    return client.infer(model, inputs, outputs=outputs, parameters=parameters)


def next_state(result) -> dict[str, np.ndarray]:
    """final_c_l/final_h_l, as the next call's initial_c_l/initial_h_l."""
    names = [f"{part}_{layer}" for layer in range(LAYERS) for part in "ch"]
    return {f"initial_{name}": result.as_numpy(f"final_{name}") for name in names}


def test_health_and_metadata(triton_client, server):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready(DIGITS) and triton_client.is_model_ready(CHARS, "1")
    assert not triton_client.is_model_ready("no-such-model") and not triton_client.is_model_ready(CHARS, "3")
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    metadata = triton_client.get_model_metadata(DIGITS)
    assert metadata["name"] == DIGITS and metadata["versions"] == ["1"]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]][-1] == ("logits", [-1, 10])
    assert triton_client.get_model_metadata(CHARS, "1")["versions"] == ["1", "2"]


ALL = ["output", "final_c_0", "final_h_0", "final_c_1", "final_h_1", "logits"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_digits_streamed_row_by_row_equal_the_grpc_client(triton_client, client, digits, binary):
    """binary: tritonclient's default; json: binary_data=False on every input and output."""
    whole = client.infer(DIGITS, digits)  # lstmserve.client: one gRPC call, every row at once
    state, fingerprint, outputs = {}, None, []
    for row in range(digits.shape[1]):
        result = infer(triton_client, DIGITS, digits[:, row : row + 1], state, fingerprint, binary, ALL)
        response = result.get_response()
        kinds = {"data" in output for output in response["outputs"]}
        assert kinds == {not binary}  # every output in the form asked for
        outputs.append(result.as_numpy("output"))
        state = next_state(result)
        fingerprint = response["parameters"]["state_fingerprint"]
    assert fingerprint == whole.state.fingerprint
    np.testing.assert_array_equal(bits(np.concatenate(outputs, axis=1)), bits(whole.output))
    np.testing.assert_array_equal(bits(result.as_numpy("logits")), bits(whole.logits))
    for layer, (c, h) in enumerate(whole.state.layers):
        np.testing.assert_array_equal(bits(state[f"initial_c_{layer}"]), bits(c))
        np.testing.assert_array_equal(bits(state[f"initial_h_{layer}"]), bits(h))


def test_no_outputs_named_gives_every_output_in_binary(triton_client, client, digits):
    """tritonclient names no outputs by default and asks for binary_data_output: all come back."""
    result = triton_client.infer(DIGITS, [tensor("input", digits, True)])
    assert [output["name"] for output in result.get_response()["outputs"]] == ALL
    np.testing.assert_array_equal(bits(result.as_numpy("logits")), bits(client.infer(DIGITS, digits).logits))


def error_of(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status(), caught.value.message()


def test_errors_reach_tritonclient_with_their_status(triton_client, digits):
    x = digits[:1, :2]
    first = infer(triton_client, DIGITS, x, {}, None, True, ALL)
    state = next_state(first)
    cases = [
        (
            lambda: infer(triton_client, "no-such-model", x, {}, None, True),
            "404",
            "unknown model 'no-such-model'",
        ),
        (lambda: infer(triton_client, DIGITS, x, state, None, True), "400", "without the state_fingerprint"),
        (
            lambda: infer(triton_client, DIGITS, x, state, "0123456789abcdef", True),
            "409",
            "a model not served here",
        ),
        (
            lambda: triton_client.infer(
                DIGITS, [tensor("input", x, True)], sequence_id=7, sequence_start=True
            ),
            "400",
            "keeps no state between calls",
        ),
        (
            lambda: triton_client.infer(
                DIGITS, [tensor("input", x, True)], request_compression_algorithm="gzip"
            ),
            "415",
            "Content-Encoding 'gzip' is not taken",
        ),
        (lambda: infer(triton_client, DIGITS, x, {}, None, True, ["probabilities"]), "400", "unknown output"),
    ]
    for call, status, words in cases:
        got_status, message = error_of(call)
        assert got_status == status and words in message, (status, words, got_status, message)


@pytest.fixture(scope="module")
def sealing(repository, tmp_path_factory):
    pytest.importorskip("cryptography", reason="pip install cryptography (lstmserve[serve] has it)")
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(os.urandom(32).hex() + "\n")
    server = InProcessServer(Settings(repository=str(repository), state_key_file=str(keys))).start()
    client = triton.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=20)
    yield client
    client.close()
    server.stop()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_sealed_state_round_trips_as_triton_bytes(sealing, client, digits, binary):
    """In binary, sealed_state is Triton's raw BYTES element, the bytes as they are; in JSON a string
    holds text, so its element is the bytes in base64, which the caller encodes and decodes."""
    state, fingerprint, outputs = {}, None, []
    for cut in ((0, 3), (3, 8)):
        result = infer(
            sealing, DIGITS, digits[:, slice(*cut)], state, fingerprint, binary, ["output", "sealed_state"]
        )
        outputs.append(result.as_numpy("output"))
        (sealed,) = result.as_numpy("sealed_state")
        blob = sealed if binary else base64.b64decode(sealed)
        assert isinstance(blob, bytes) and len(blob) > 32
        state = {"sealed_state": np.array([sealed if binary else sealed.encode()], dtype=object)}
        fingerprint = result.get_response()["parameters"]["state_fingerprint"]
    whole = client.infer(DIGITS, digits)  # the session's unsealed server
    np.testing.assert_array_equal(bits(np.concatenate(outputs, axis=1)), bits(whole.output))
    forged = bytearray(blob)
    forged[-3] ^= 1
    forged_state = {
        "sealed_state": np.array([bytes(forged) if binary else base64.b64encode(forged)], dtype=object)
    }
    status, message = error_of(lambda: infer(sealing, DIGITS, digits, forged_state, fingerprint, binary))
    assert status == "409" and "altered, truncated, or sealed" in message
