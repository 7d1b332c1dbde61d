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


def test_sigterm_under_load_answers_every_call_or_says_unavailable(repository):
    """Unary callers hammering and bidi streams open when SIGTERM comes: every call the server took
    completes, every later one is UNAVAILABLE (the client's cue to go elsewhere), open streams are
    answered through the grace period and then end UNAVAILABLE; nothing is cancelled or UNKNOWN."""
    import threading
    from collections import Counter

    from lstmserve.client import LstmServeClientError

    server = ServerProcess(repository, "--grace-seconds", "1.5")
    x = np.random.default_rng(1).standard_normal((2, 4, 5)).astype(np.float32)
    codes: Counter = Counter()
    streamed_after: list[int] = []
    signalled = threading.Event()
    done = threading.Event()

    def caller(seed):
        with Client(server.address, timeout=10) as client:
            while not done.is_set():
                try:
                    client.infer(CHARS, x)
                    codes["OK"] += 1
                except LstmServeClientError as exc:
                    codes[exc.code.name] += 1
                    time.sleep(0.02)  # a real app backs off (and, behind a balancer, goes elsewhere)

    def streamer():
        answered = 0
        with Client(server.address, timeout=10) as client, client.stream(CHARS, bidi=True) as stream:
            while True:
                try:
                    stream.feed(x)
                except LstmServeClientError as exc:
                    codes["stream " + exc.code.name] += 1
                    break
                answered += signalled.is_set()
                time.sleep(0.01)
        streamed_after.append(answered)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    threads += [threading.Thread(target=streamer) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    server.process.send_signal(15)
    signalled.set()
    assert server.process.wait(20) == 0
    done.set()
    for thread in threads:
        thread.join(20)
    log = "".join(server.log)
    assert set(codes) <= {"OK", "UNAVAILABLE", "stream UNAVAILABLE"}, codes
    assert codes["OK"] > 50 and codes["UNAVAILABLE"] > 0 and codes["stream UNAVAILABLE"] == 2, codes
    assert all(answered > 10 for answered in streamed_after), streamed_after  # served through the grace
    assert "Traceback" not in log and "Exception not handled" not in log, log


def test_an_unexpected_failure_is_internal_logged_once_and_counted(repository, tmp_path):
    """A model that loads but fails when run (a broken export): INTERNAL with a short message, its
    traceback logged once, the call counted as INTERNAL, and the server goes on serving."""
    import urllib.request

    import onnx

    from lstmserve.client import ServerError

    from ..servers import free_port

    root = tmp_path / "models"
    shutil.copytree(repository / CHARS, root / CHARS)
    model = onnx.load(root / CHARS / "1" / "model.onnx")
    # Reshape the per-step output to rows of 13 values: a (1, 1, 7) output cannot be.
    for node in model.graph.node:  # what computed and consumed `output` now uses `output_raw`
        node.output[:] = ["output_raw" if name == "output" else name for name in node.output]
        node.input[:] = ["output_raw" if name == "output" else name for name in node.input]
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1, 13], np.int64), "rows_of_13"))
    model.graph.node.append(onnx.helper.make_node("Reshape", ["output_raw", "rows_of_13"], ["output"]))
    onnx.save(model, root / CHARS / "1" / "model.onnx")
    port = free_port()
    server = ServerProcess(root, "--metrics-port", str(port))
    try:
        with Client(server.address) as client:
            with pytest.raises(ServerError) as caught:
                client.infer(CHARS, np.ones((1, 1, 5)), version=1)
            assert caught.value.code.name == "INTERNAL"
            assert caught.value.details == "internal error; the server logged it"
            assert client.infer(CHARS, np.ones((1, 1, 5)), version=2).output.shape == (1, 1, 7)
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        assert server.terminate() == 0
    log = "".join(server.log)
    assert log.count("Infer failed unexpectedly") == 1 and log.count("Traceback") == 1
    assert 'lstmserve_requests_total{code="INTERNAL",method="Infer",model="-"} 1.0' in scrape
