"""Calls in flight, for the tests of what a stop or a reload does to them.

A long chunk on the `slow` model (tests/conftest.py) keeps a real unary Infer busy for seconds; the
calls go over channels without the client's retries, so a test sees the status the server sent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lstmserve import contract
from lstmserve.client.messages import InferResult, infer_request
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from ..conftest import SLOW

INPUT_SIZE = 5  # the slow model's


class LongCall:
    """One Infer of a `steps`-step chunk, on a thread of its own; started and given time to arrive."""

    def __init__(self, address: str, steps: int, version: int = 0, seed: int = 0):
        self.x = np.random.default_rng(seed).standard_normal((1, steps, INPUT_SIZE)).astype(np.float32)
        self.address, self.version = address, version
        self.result: InferResult | None = None
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.ended = 0.0  # time.monotonic() when its status came
        self.thread = threading.Thread(target=self._call, daemon=True)
        self.thread.start()
        time.sleep(0.3)  # sent and running: its run takes seconds

    def _call(self) -> None:
        request = infer_request(SLOW, self.x, version=self.version, outputs=["state"])
        with grpc.insecure_channel(self.address) as channel:
            try:
                response = pb_grpc.LSTMServiceStub(channel).Infer(request, timeout=60)
                self.result, self.code = InferResult.from_proto(response), grpc.StatusCode.OK
            except grpc.RpcError as error:
                self.code, self.details = error.code(), error.details() or ""
        self.ended = time.monotonic()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self) -> LongCall:
        self.thread.join(60)
        assert self.done(), "the call did not end within 60 s"
        return self


def health_status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status


def steps_lasting(path: Path, seconds: float, most: int) -> int:
    """One row's steps whose run takes about `seconds` on this machine (one onnxruntime thread, as
    the server runs it), from a short run timed here, and at most `most`: a call that must outlast
    a stop or a health check on any CPU, rather than 16384 steps that take 2 s on one."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    probe = 2000
    feed = {
        contract.INPUT: np.zeros((1, probe, INPUT_SIZE), np.float32),
        contract.SEQUENCE_LENGTHS: np.full(1, probe, np.int32),
    }
    for value in session.get_inputs()[2:]:
        feed[value.name] = np.zeros((1, value.shape[1]), np.float32)
    session.run(None, feed)  # the first run allocates
    started = time.perf_counter()
    session.run(None, feed)
    per_step = (time.perf_counter() - started) / probe
    return max(probe, min(most, int(seconds / per_step)))


class LocalModel:
    """A model file run by onnxruntime in this process: what the server must answer for it."""

    def __init__(self, path: Path):
        self.session = ort.InferenceSession(str(path))
        self.fingerprint = self.session.get_modelmeta().custom_metadata_map[contract.META_FINGERPRINT]
        self.num_layers = (len(self.session.get_inputs()) - 2) // 2

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs for `x` from zero state."""
        feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: np.full(len(x), x.shape[1], np.int32)}
        for value in self.session.get_inputs()[2:]:
            feed[value.name] = np.zeros((len(x), value.shape[1]), np.float32)
        names = [output.name for output in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed)))

    def assert_state(self, state, x: np.ndarray, atol: float = 1e-5) -> None:
        """`state` (a client State) is this model's, and every layer's c and h as it computes them."""
        want = self.run(x)
        assert state.fingerprint == self.fingerprint and len(state.layers) == self.num_layers
        close = {"atol": atol, "rtol": 0}
        for layer, (c, h) in enumerate(state.layers):
            np.testing.assert_allclose(c, want[contract.final_c(layer)], **close, err_msg=f"layer {layer} c")
            np.testing.assert_allclose(h, want[contract.final_h(layer)], **close, err_msg=f"layer {layer} h")
