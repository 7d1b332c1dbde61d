"""The server as a process started by the CLI: start-up, graceful SIGTERM, CUDA fallback, bad set-ups."""

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from lstmserve.client import Client, UnavailableError

from ..conftest import CHARS, DIGITS
from ..servers import ServerProcess


def wait_for(predicate, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_sigterm_finishes_the_call_in_flight_refuses_new_ones_and_exits_0(repository):
    server = ServerProcess(repository)
    x = np.random.default_rng(0).standard_normal((2, 6, 5)).astype(np.float32)
    with Client(server.address) as client:
        whole = client.infer(CHARS, x, version=1)
        stream = client.stream(CHARS, version=1, bidi=True)
        stream.feed(x[:, :3])  # a StreamInfer call is now in flight
        server.process.send_signal(15)
        wait_for(lambda: any("stopping" in line for line in server.log))
        rest = stream.feed(x[:, 3:])  # ...and is still answered during the grace period
        np.testing.assert_allclose(rest.output, whole.output[:, 3:], atol=1e-6, rtol=0)
        with Client(server.address, timeout=5) as late, pytest.raises(UnavailableError):
            late.infer(CHARS, x)  # new calls are refused
        stream.close()
    assert server.process.wait(20) == 0
    assert any("stopped" in line for line in server.log)


def test_serve_logs_each_model_and_the_address(repository):
    server = ServerProcess(repository)
    try:
        text = "".join(server.log)
        assert "loaded digits v1: 8 inputs, layers [16, 8], head classify_last" in text
        assert "loaded chars v2" in text and "listening on 127.0.0.1:" in text
    finally:
        assert server.terminate() == 0


def test_cuda_asked_for_where_absent_warns_and_serves_on_cpu(repository):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: the fallback cannot be seen here")
    server = ServerProcess(repository, env={"LSTMSERVE_DEVICE": "cuda"})
    try:
        assert any("no CUDA execution provider: using cpu" in line for line in server.log)
        with Client(server.address) as client:
            assert client.infer(DIGITS, np.zeros((1, 8, 8))).logits.shape == (1, 10)
    finally:
        assert server.terminate() == 0


def test_a_broken_model_file_is_logged_and_the_rest_served(repository, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(repository / DIGITS, root / DIGITS)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    server = ServerProcess(root)
    try:
        assert any("not served:" in line and "broken/1/model.onnx" in line for line in server.log)
        with Client(server.address) as client:
            assert [m.name for m in client.models()] == [DIGITS]
    finally:
        assert server.terminate() == 0


def serve_command(*args: str, env=None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "lstmserve", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_missing_repository_stops_the_start_with_a_message(tmp_path):
    done = serve_command("--repository", str(tmp_path / "nowhere"), "--port", "0")
    assert done.returncode == 1
    assert "cannot start: model repository" in done.stderr and "is not a folder" in done.stderr


def test_a_taken_port_stops_the_start_with_a_message(repository):
    first = ServerProcess(repository)
    try:
        done = serve_command("--repository", str(repository), "--port", str(first.port))
        assert done.returncode == 1 and "cannot bind 127.0.0.1:" in done.stderr
    finally:
        first.terminate()


def test_a_bad_environment_variable_is_named():
    done = serve_command(env={"LSTMSERVE_PORT": "fifty"})
    assert done.returncode == 2
    assert "LSTMSERVE_PORT='fifty' is not a valid int" in done.stderr and "Traceback" not in done.stderr
