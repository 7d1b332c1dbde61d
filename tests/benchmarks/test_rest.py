"""The bench's REST load: its binary requests are tritonclient.http's, its answers are checked against
gRPC's (and the check fails for a server that does not do the work), and the HTTP echo answers each
form with the real server's bytes."""

import asyncio
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from lstmserve.benchmarks import rest_check
from lstmserve.benchmarks.load import PLAINTEXT
from lstmserve.benchmarks.processes import ServerProcess
from lstmserve.benchmarks.rest import HttpConnection, RestStream, fp32_arrays

from ..conftest import DIGITS

# tritonclient in a process of its own: its `inference` stubs cannot share one with lstmserve's
TRITON = """
import json, sys
import numpy as np
import tritonclient.http as triton
inputs = []
for name, shape, data in json.loads(sys.argv[1]):
    tensor = triton.InferInput(name, shape, "FP32")
    tensor.set_data_from_numpy(np.array(data, np.float32).reshape(shape))
    inputs.append(tensor)
body, length = triton.InferenceServerClient.generate_request_body(
    inputs, parameters={"state_fingerprint": sys.argv[2]}
)
print(json.dumps([body.hex(), length]))
"""


def test_the_binary_request_is_byte_for_byte_tritonclients():
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("pip install tritonclient[http] (the dev extra has it)")
    chunk = np.arange(8, dtype=np.float32).reshape(1, 1, 8) / 7  # (rows, steps, input_size)
    stream = RestStream(HttpConnection(), DIGITS, 1, chunk, binary=True)
    stream.fingerprint = "0123abcd"
    c, h = np.full((1, 4), 0.25, np.float32), np.full((1, 4), -1.5, np.float32)
    stream.state = [
        ("initial_c_0", "FP32", [1, 4], c.tobytes()),
        ("initial_h_0", "FP32", [1, 4], h.tobytes()),
    ]
    tensors = [
        ("input", [1, 1, 8], chunk.ravel().tolist()),
        ("initial_c_0", [1, 4], c.ravel().tolist()),
        ("initial_h_0", [1, 4], h.ravel().tolist()),
    ]
    done = subprocess.run(
        [sys.executable, "-c", TRITON, json.dumps(tensors), stream.fingerprint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    body, length = json.loads(done.stdout)
    assert stream.binary_body() == (bytes.fromhex(body), length)


def _answers(address: str, chunk: np.ndarray, steps: int) -> dict:
    async def run() -> dict:
        answers = {}
        for binary in (False, True):
            http = await HttpConnection.open(address)
            try:
                stream = RestStream(http, DIGITS, 1, chunk, binary)
                for _ in range(steps):
                    answers[binary] = await stream.call()
            finally:
                await http.close()
        return answers

    return asyncio.run(run())


def test_the_check_holds_rest_to_grpc_and_the_echo_answers_with_its_bytes(
    server, client, tmp_path, monkeypatch
):
    size = client.model(DIGITS).input_size
    http = f"127.0.0.1:{server.http_port}"
    checked = rest_check.check_and_can(server.address, http, (DIGITS, 1, size), PLAINTEXT, tmp_path)
    assert {"output", "logits", "final_c_0", "final_h_0"} <= set(checked["outputs"])
    echo = ServerProcess([sys.executable, "-m", "lstmserve.benchmarks.echo_http", *checked["echo_args"]])
    try:
        chunk = np.random.default_rng(0).random((1, 1, size), dtype=np.float32)
        real, echoed = _answers(http, chunk, rest_check.STEPS), _answers(echo.address, chunk, 2)
        for binary in (False, True):  # the same bytes, in the same form, as the real server's
            assert echoed[binary].body == real[binary].body
            assert echoed[binary].header_length == real[binary].header_length
            assert (real[binary].header_length is not None) == binary
            for name, array in fp32_arrays(real[binary]).items():
                np.testing.assert_array_equal(fp32_arrays(echoed[binary])[name], array)
        # The echo does no work: held to gRPC at another step count, its answers are not gRPC's.
        monkeypatch.setattr(rest_check, "STEPS", 2)
        with pytest.raises(rest_check.AnswerMismatch, match="differs from gRPC's"):
            rest_check.check_and_can(server.address, echo.address, (DIGITS, 1, size), PLAINTEXT, tmp_path)
    finally:
        echo.terminate()
