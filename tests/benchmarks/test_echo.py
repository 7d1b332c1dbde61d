"""The echo floor answers as the real server would in size: N rows for a call of N rows, and no
state to a request whose `outputs` leave it out (a sparse-state stream's chunks between states)."""

import sys

import numpy as np

from lstmserve.benchmarks.processes import ServerProcess
from lstmserve.client import Client
from lstmserve.client.messages import infer_request

from ..conftest import DIGITS


def test_the_echo_answers_with_the_rows_and_parts_asked_for(client, tmp_path):
    size = client.model(DIGITS).input_size
    files = []
    for rows in (1, 4):  # the real server's answers to chunks of zeros, as the bench cans them
        answer = client.stub.Infer(infer_request(DIGITS, np.zeros((rows, 1, size), np.float32)))
        files += ["--response", str(tmp_path / f"{rows}.pb")]
        (tmp_path / f"{rows}.pb").write_bytes(answer.SerializeToString())
    echo = ServerProcess([sys.executable, "-m", "lstmserve.benchmarks.echo", *files])
    try:
        with Client(echo.address, timeout=10) as to_echo:
            for rows, expected in ((1, 1), (4, 4), (3, 1)):  # a count it was not given: the first
                x = np.ones((rows, 1, size), np.float32)
                full = to_echo.stub.Infer(infer_request(DIGITS, x))
                assert full.output.shape[0] == expected and full.HasField("state")
                assert full.state.layers[0].c.shape[0] == expected
                sparse = to_echo.stub.Infer(infer_request(DIGITS, x, outputs=("output", "logits")))
                assert not sparse.HasField("state") and sparse.output == full.output
                assert sparse.ByteSize() < full.ByteSize()
            # as the real server answers the same request
            x = np.zeros((4, 1, size), np.float32)
            request = infer_request(DIGITS, x, outputs=("logits",))
            assert to_echo.stub.Infer(request) == client.stub.Infer(request)
    finally:
        echo.terminate()
