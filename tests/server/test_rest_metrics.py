"""HTTP calls in the Prometheus metrics: the same counters as gRPC's, with protocol="http", KServe's
method names and the gRPC status code each HTTP status stands for."""

from __future__ import annotations

import numpy as np

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer, free_port
from .rest_calls import infer, model_path, post_infer, session
from .test_metrics import kserve_infer, scrape, value

X = np.ones((2, 3, 5), np.float32)
KSERVE_METHODS = set(kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)


def test_http_calls_are_counted_by_protocol_method_and_grpc_code(repository):
    port = free_port()
    server = InProcessServer(Settings(repository=str(repository), metrics_port=port)).start()
    url = server.http_url
    try:
        with session() as http:
            for _ in range(3):
                infer(http, url, CHARS, {"input": X}, version="1")
            v2 = infer(http, url, CHARS, {"input": X}, version="2")
            statuses = [
                post_infer(http, url, CHARS, {"input": np.ones((1, 3, 4), np.float32)}, version="1"),
                post_infer(
                    http, url, CHARS, {"input": X, **v2.state()}, version="1", fingerprint=v2.fingerprint
                ),
                post_infer(http, url, "nope", {"input": X}),
                http.post(
                    f"{url}{model_path(CHARS)}/infer", data=b"{}", headers={"Content-Encoding": "gzip"}
                ),
                http.get(url + model_path(CHARS), timeout=5),
                http.get(f"{url}{model_path(CHARS, '1')}/ready", timeout=5),
                http.get(url + "/v2", timeout=5),
            ]
        assert [answer.status_code for answer in statuses] == [400, 409, 404, 415, 200, 200, 200]
        kserve_infer(server.address, X)  # the same method over gRPC: counted apart
        samples = scrape(port)
    finally:
        server.stop()

    def http_calls(model: str, method: str, code: str) -> float:
        return value(
            samples, "lstmserve_requests_total", model=model, protocol="http", method=method, code=code
        )

    assert http_calls("chars:1", "ModelInfer", "OK") == 3
    assert http_calls("chars:2", "ModelInfer", "OK") == 1
    assert http_calls("chars:1", "ModelInfer", "INVALID_ARGUMENT") == 1  # 400
    assert http_calls("chars:1", "ModelInfer", "FAILED_PRECONDITION") == 1  # 409
    assert http_calls("-", "ModelInfer", "NOT_FOUND") == 1  # 404: no model, so no model label
    assert http_calls("-", "ModelInfer", "INVALID_ARGUMENT") == 1  # 415, refused before any model
    assert http_calls("chars:2", "ModelMetadata", "OK") == 1
    assert http_calls("chars:1", "ModelReady", "OK") == 1
    assert http_calls("-", "ServerMetadata", "OK") == 1
    grpc_calls = dict(model="chars:1", protocol="grpc", method="ModelInfer")
    assert value(samples, "lstmserve_requests_total", code="OK", **grpc_calls) == 1
    timed = value(
        samples, "lstmserve_request_seconds_count", model="chars:1", protocol="http", method="ModelInfer"
    )
    assert timed == 5  # every answered call has its latency, refusals too
    assert value(samples, "lstmserve_batch_requests_sum", model="chars:1") == 4  # 3 over HTTP, 1 over gRPC
    http_methods = {
        dict(labels)["method"]
        for (name, labels) in samples
        if name == "lstmserve_requests_total" and dict(labels)["protocol"] == "http"
    }
    assert http_methods == {"ModelInfer", "ModelMetadata", "ModelReady", "ServerMetadata"}
    assert http_methods <= KSERVE_METHODS  # the names gRPC's KServe methods count under
