"""On a GPU: the exported models' CUDA results equal the CPU's, ragged lengths and 0-length rows
included (onnxruntime's CUDA LSTM has had wrong results with mixed lengths: onnxruntime#1400).
Where no GPU is, it skips and says so (the CPU fallback is test_lifecycle's)."""

from __future__ import annotations

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lstmserve.client import Client
from lstmserve.export.onnx import export_model
from lstmserve.export.verify import random_feed, run, scaled_gap
from lstmserve.model.checkpoint import load_checkpoint
from lstmserve.server.runtime import providers_for

from ..conftest import CHARS, DIGITS, random_checkpoint
from ..servers import ServerProcess, free_port
from .test_metrics import scrape, value

TOLERANCE = 1e-4  # scaled by 1 + |value|: cuDNN's LSTM adds in its own order (TF32 is off in ORT)


def _cuda_session(model_bytes: bytes) -> ort.InferenceSession | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    session = ort.InferenceSession(model_bytes, providers=providers_for("cuda"))
    return session if session.get_providers()[0] == "CUDAExecutionProvider" else None


@pytest.mark.skip_ok_in_ci  # CI machines have no GPU; the device tool lends one to some sessions only
@pytest.mark.parametrize(
    "config",
    [
        dict(input_size=8, hidden_sizes=(128,), head="classify_last", num_outputs=10),
        dict(input_size=28, hidden_sizes=(128, 128), head="per_step", num_outputs=5),
    ],
)
def test_cuda_equals_cpu_with_ragged_and_empty_rows(tmp_path, config):
    stack = load_checkpoint(random_checkpoint(tmp_path / "m.pt", 3, **config)).model
    model = export_model(stack).SerializeToString()
    cuda = _cuda_session(model)
    if cuda is None:
        pytest.skip("no CUDA GPU here (onnxruntime has no working CUDA execution provider): not measured")
    cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    cases = [random_feed(stack, rows, 9, rng) for rows in (1, 64, 1024)]
    cases.append(random_feed(stack, 8, 9, rng, np.array([0, 1, 9, 4, 0, 7, 9, 2], np.int32)))
    for feed in cases:
        want, got = run(cpu, feed), run(cuda, feed)
        for name in want:
            gap = scaled_gap(got[name], want[name])
            assert gap <= TOLERANCE, (name, feed["input"].shape, gap)
        lengths = feed["sequence_lengths"]
        for row in np.flatnonzero(lengths == 0):  # a 0-length row keeps its state on the GPU too
            np.testing.assert_array_equal(got["final_h_0"][row], feed["initial_h_0"][row])


@pytest.mark.skip_ok_in_ci  # as above: no GPU in CI
def test_the_server_on_cuda_says_so_everywhere_and_answers_as_the_cpu_does(repository):
    """Start log, GetModel, health and metrics name the provider and device that run each model (and
    onnxruntime's own warnings stay out of the log); a stream of chunks fed its own state back, ragged
    rows and a 0-length row among them, matches the CPU server's."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA GPU here (onnxruntime has no CUDA execution provider): not measured")
    port = free_port()
    cuda = ServerProcess(repository, "--device", "cuda", "--metrics-port", str(port))
    cpu = ServerProcess(repository)
    try:
        log = "".join(cuda.log)
        if "CUDAExecutionProvider" not in log:
            pytest.skip(f"onnxruntime-gpu is here but no GPU answers: {log[-300:]}")
        assert f"loaded {DIGITS} v1" in log and "CUDAExecutionProvider on cuda:0" in log, log
        assert "W:onnxruntime" not in log, log
        rng = np.random.default_rng(1)
        with Client(cuda.address) as on_gpu, Client(cpu.address) as on_cpu:
            chars = on_gpu.model(CHARS, version=2)
            assert (chars.provider, chars.device) == ("CUDAExecutionProvider", "cuda:0")
            assert (on_cpu.model(DIGITS).provider, on_cpu.model(DIGITS).device) == (
                "CPUExecutionProvider",
                "cpu",
            )
            lengths = np.array([3, 0, 1, 3], np.int32)
            gpu_state = cpu_state = None
            for _ in range(3):
                x = rng.standard_normal((4, 3, 5)).astype(np.float32)
                got = on_gpu.infer(CHARS, x, state=gpu_state, lengths=lengths, version=2)
                want = on_cpu.infer(CHARS, x, state=cpu_state, lengths=lengths, version=2)
                assert scaled_gap(got.logits, want.logits) <= TOLERANCE
                gpu_state, cpu_state = got.state, want.state
        with grpc.insecure_channel(cuda.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="device/cuda")
            assert health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        labels = dict(model=CHARS, version="2", fingerprint=chars.fingerprint, quantization="none")
        info = dict(provider="CUDAExecutionProvider", device="cuda:0")
        assert value(scrape(port), "lstmserve_model_info", **labels, **info) == 1
    finally:
        assert cuda.terminate() == 0 and cpu.terminate() == 0


@pytest.mark.skip_ok_in_ci  # as above: no GPU in CI
def test_an_int8_version_is_served_on_the_cpu_and_says_so(tiny_checkpoint, tmp_path):
    """int8's DynamicQuantizeLSTM has no CUDA kernel: such a version runs on the CPU, and GetModel,
    the log and device/cuda health say so rather than cuda:0."""
    from lstmserve.export.publish import export_checkpoint

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA GPU here (onnxruntime has no CUDA execution provider): not measured")
    export_checkpoint(tiny_checkpoint, tmp_path / "models", DIGITS, quantize="int8")
    server = ServerProcess(tmp_path / "models", "--device", "cuda")
    try:
        log = "".join(server.log)
        assert "int8: onnxruntime runs its LSTMs on the CPU only" in log, log
        with Client(server.address) as client:
            info = client.model(DIGITS)
            assert (info.quantization, info.provider, info.device) == ("int8", "CPUExecutionProvider", "cpu")
            assert client.model(DIGITS, version=1).device == "cuda:0"
            assert client.infer(DIGITS, np.zeros((2, 4, 8))).logits.shape == (2, 10)
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = {
                device: health.Check(
                    health_pb2.HealthCheckRequest(service=f"device/{device}"), timeout=5
                ).status
                for device in ("cpu", "cuda")
            }
        # export wrote v1 fp32 (on the GPU) beside v2 int8 (on the CPU): neither device has them all
        assert status == {
            "cpu": health_pb2.HealthCheckResponse.NOT_SERVING,
            "cuda": health_pb2.HealthCheckResponse.NOT_SERVING,
        }
    finally:
        assert server.terminate() == 0
