"""Prometheus metrics, scraped over HTTP from a real server after real calls."""

import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lstmserve.client import Client, InvalidArgumentError, NotFoundError
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer, free_port


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grpc_calls(samples, model: str, method: str, code: str) -> float:
    """How many gRPC calls (and stream messages) of `method` on `model` ended with `code`."""
    return value(samples, "lstmserve_requests_total", model=model, protocol="grpc", method=method, code=code)


def kserve_infer(address: str, x: np.ndarray) -> None:
    """One ModelInfer of chars v1 over KServe v2: counted and batched as lstmserve.v1 calls are."""
    request = kserve.ModelInferRequest(model_name=CHARS, model_version="1")
    request.inputs.add(name="input", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.tobytes())
    with grpc.insecure_channel(address) as channel:
        kserve_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)


def test_metrics_count_calls_codes_batches_and_models(repository):
    port = free_port()
    server = InProcessServer(Settings(repository=str(repository), metrics_port=port)).start()
    try:
        x = np.ones((2, 3, 5), np.float32)
        with Client(server.address) as client:
            for _ in range(3):
                client.infer(CHARS, x, version=1)
            with pytest.raises(InvalidArgumentError):
                client.infer(CHARS, np.ones((1, 3, 4)), version=1)  # counted under its model
            with pytest.raises(NotFoundError):
                client.infer("nope", x)  # no model: "-" (labels never take a client's text)
            kserve_infer(server.address, x)
            with client.stream(CHARS, version=2, bidi=True) as stream:
                stream.feed(x)
                stream.feed(x)
                during = scrape(port)
            deadline = time.monotonic() + 5
            while value(samples := scrape(port), "lstmserve_streams_in_flight") != 0:  # the close reaches it
                assert time.monotonic() < deadline, value(samples, "lstmserve_streams_in_flight")
                time.sleep(0.05)
    finally:
        server.stop()
    assert grpc_calls(samples, "chars:1", "Infer", "OK") == 3
    assert grpc_calls(samples, "chars:1", "Infer", "INVALID_ARGUMENT") == 1
    assert grpc_calls(samples, "-", "Infer", "NOT_FOUND") == 1
    assert grpc_calls(samples, "chars:2", "StreamInfer", "OK") == 2
    # Closing a stream half-closes it: the server ends it OK, not CANCELLED.
    assert grpc_calls(samples, "chars:2", "StreamInfer", "CANCELLED") == 0
    assert (
        value(samples, "lstmserve_request_seconds_count", model="chars:1", protocol="grpc", method="Infer")
        == 4
    )
    assert value(samples, "lstmserve_compute_seconds_count", model="chars:1") >= 1
    assert grpc_calls(samples, "chars:1", "ModelInfer", "OK") == 1
    assert value(samples, "lstmserve_batch_requests_sum", model="chars:1") == 4  # every request ran once
    assert (
        value(during, "lstmserve_streams_in_flight") == 1
        and value(samples, "lstmserve_streams_in_flight") == 0
    )
    models = {
        dict(labels)["model"] + " v" + dict(labels)["version"]
        for (name, labels) in samples
        if name == "lstmserve_model_info"
    }
    assert models == {"digits v1", "chars v1", "chars v2"}
    assert {
        (dict(labels)["provider"], dict(labels)["device"])
        for (name, labels) in samples
        if name == "lstmserve_model_info"
    } == {("CPUExecutionProvider", "cpu")}
