"""Infer is retried on UNAVAILABLE by the channel's retry policy, without the caller seeing it."""

from concurrent import futures

import grpc
import numpy as np

from lstmserve.client import Client
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from ..conftest import CHARS


class FlakyFront(pb_grpc.LSTMServiceServicer):
    """A real gRPC server in front of the real one that answers UNAVAILABLE to the first calls, as a
    replica going down behind a balancer does, then forwards."""

    def __init__(self, backend: str, failures: int):
        self.backend = pb_grpc.LSTMServiceStub(grpc.insecure_channel(backend))
        self.failures = failures
        self.calls = 0

    def Infer(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
        return self.backend.Infer(request)


def test_infer_is_retried_on_unavailable(server):
    front = FlakyFront(server.address, failures=2)
    proxy = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_LSTMServiceServicer_to_server(front, proxy)
    port = proxy.add_insecure_port("127.0.0.1:0")
    proxy.start()
    try:
        x = np.ones((1, 3, 5), np.float32)
        with Client(f"127.0.0.1:{port}") as client:
            result = client.infer(CHARS, x, version=1)
        with Client(server.address) as direct:
            np.testing.assert_array_equal(result.output, direct.infer(CHARS, x, version=1).output)
        assert front.calls == 3  # two refusals, retried by the channel, then the answer
    finally:
        proxy.stop(None)
