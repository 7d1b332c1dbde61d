"""The server as a process started by the CLI: start-up, graceful SIGTERM, CUDA fallback, bad set-ups."""

import shutil
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from lstmserve.client import Client, UnavailableError
from lstmserve.client.messages import infer_request
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from ..conftest import CHARS, DIGITS, SLOW
from ..servers import ServerProcess
from .long_calls import LocalModel, LongCall, health_status, steps_lasting

# One row of 5 float32 inputs is 20 bytes a step: 200k steps stay under the 4 MiB message limit.
MOST_STEPS = 200_000


def step_limits(steps: int) -> list[str]:
    """Server flags that admit one row of `steps` steps (over the defaults for the longer calls)."""
    steps = max(steps, 16384)
    return ["--max-request-steps", str(steps), "--max-request-row-steps", str(2 * steps)]


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


@pytest.fixture
def one_slow_model(slow_models, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(slow_models / SLOW / "1", root / SLOW / "1")
    return root


def test_sigterm_turns_health_not_serving_at_once_and_the_long_call_in_flight_completes(one_slow_model):
    """Health says NOT_SERVING while the call taken before the signal still runs; that call is
    answered in full (every layer's state as onnxruntime computes it); a new one is UNAVAILABLE."""
    steps = steps_lasting(one_slow_model / SLOW / "1" / "model.onnx", 4.0, MOST_STEPS)
    server = ServerProcess(one_slow_model, "--grace-seconds", "10", *step_limits(steps))
    assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
    long = LongCall(server.address, steps=steps)  # about 4 s, on any CPU
    assert not long.done()
    signalled = time.monotonic()
    server.process.send_signal(15)
    statuses = []
    while not statuses or statuses[-1] != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert time.monotonic() - signalled < 1.0, statuses
        statuses.append(health_status(server.address))
    for service in ("lstmserve.v1.LSTMService", "inference.GRPCInferenceService", SLOW):
        assert health_status(server.address, service) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert not long.done(), "the long call ended before health was seen NOT_SERVING"
    with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.LSTMServiceStub(channel).Infer(infer_request(SLOW, long.x[:, :4]), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    long.join()
    assert long.code == grpc.StatusCode.OK, (long.code, long.details)
    assert server.process.wait(20) == 0
    LocalModel(one_slow_model / SLOW / "1" / "model.onnx").assert_state(long.result.state, long.x)
    log = "".join(server.log)
    assert "stopped: 1 requests" in log and "Traceback" not in log, log


def test_a_unary_call_past_the_grace_ends_unavailable_when_grpc_stops(one_slow_model):
    """docs/limits.md, SIGTERM: after the grace (1 s), and at most 1 s of waiting for quiet, gRPC
    stops, cancelling what is still open after 1 s more. A unary call still running then gets
    UNAVAILABLE "Cancelling all calls" (gRPC's status for it), between grace + 1 and grace + 3 s
    after the signal (measured: 3.0 s), never CANCELLED, UNKNOWN or INTERNAL, and the process
    exits 0. The exit waits for the onnxruntime run itself: a run cannot be interrupted (docs/limits.md
    says so)."""
    # About 8 s on any CPU, so the run outlasts gRPC's stop (3 s after the signal) with room to spare.
    steps = steps_lasting(one_slow_model / SLOW / "1" / "model.onnx", 8.0, MOST_STEPS)
    server = ServerProcess(one_slow_model, "--grace-seconds", "1", *step_limits(steps))
    long = LongCall(server.address, steps=steps)
    assert not long.done()
    signalled = time.monotonic()
    server.process.send_signal(15)
    long.join()
    took = long.ended - signalled
    assert long.code == grpc.StatusCode.UNAVAILABLE, (long.code, long.details)
    assert long.details == "Cancelling all calls"
    assert 1 + 1 <= took <= 1 + 3 + 0.5, took
    assert server.process.wait(30) == 0
    log = "".join(server.log)
    # The stop waits for the run with its loop running, so gRPC finishes the call it cancelled
    # quietly (waiting with the loop blocked, gRPC logged it as an ERROR with a traceback).
    assert "stopped: 1 requests" in log and "ERROR" not in log and "Traceback" not in log, log


def test_serve_logs_each_model_and_the_address(repository):
    server = ServerProcess(repository)
    try:
        text = "".join(server.log)
        assert "loaded digits v1: 8 inputs, layers [16, 8], head classify_last" in text
        assert "loaded chars v2" in text and "listening on 127.0.0.1:" in text
    finally:
        assert server.terminate() == 0


@pytest.mark.skip_ok_in_ci  # a CI machine with a GPU cannot show the fallback: nothing is missing
def test_cuda_asked_for_where_absent_warns_and_serves_on_cpu(repository):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: the fallback cannot be seen here")
    server = ServerProcess(repository, env={"LSTMSERVE_DEVICE": "cuda"})
    try:
        assert sum("using cpu" in line or "serving on the CPU" in line for line in server.log) == 1
        with Client(server.address) as client:
            assert client.infer(DIGITS, np.zeros((1, 8, 8))).logits.shape == (1, 10)
            info = client.model(DIGITS)
            assert (info.provider, info.device) == ("CPUExecutionProvider", "cpu")  # what actually runs it
    finally:
        assert server.terminate() == 0


def test_a_broken_model_file_is_logged_and_the_rest_served(repository, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(repository / DIGITS, root / DIGITS)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    shutil.copytree(repository / DIGITS / "1", root / "my digits" / "1")  # a name the layout refuses
    shutil.copytree(repository / DIGITS / "1", root / DIGITS / "02")  # not a version number
    server = ServerProcess(root)
    try:
        assert any("not served:" in line and "broken/1/model.onnx" in line for line in server.log)
        for folder in ("my digits/1", f"{DIGITS}/02"):  # skipped, and said so
            assert any("not served:" in line and f"{folder}/model.onnx" in line for line in server.log)
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
