"""Versions dropped into or removed from the repository are served without a restart, under load."""

import shutil
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lstmserve.client import Client, NotFoundError
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer, ServerProcess


def eventually(check, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()
            if result is not False:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def add_version(root, name, source_version, version):
    """As an export does: the file appears whole (written aside, then renamed into place)."""
    staging = root / name / f".{version}.tmp"
    shutil.copytree(root / name / str(source_version), staging)
    staging.rename(root / name / str(version))


def health(address, service):
    with grpc.insecure_channel(address) as channel:
        return (
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status
        )


def model_ready(address, name, version=""):
    """KServe v2's ModelReady: the standard protocol's view of the same repository."""
    with grpc.insecure_channel(address) as channel:
        stub = kserve_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelReady(kserve.ModelReadyRequest(name=name, version=version)).ready


@pytest.fixture
def live_repository(repository, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(repository, root)
    return root


def test_versions_come_and_go_under_load_without_a_restart(live_repository):
    server = InProcessServer(Settings(repository=str(live_repository), poll_interval=0.1)).start()
    x = np.random.default_rng(30).standard_normal((2, 6, 5)).astype(np.float32)
    errors, answers, running = [], [], threading.Event()
    running.set()
    try:
        with Client(server.address) as client:
            want = client.infer(CHARS, x, version=2).output

            def load():  # a stream of calls pinned to version 2 the whole time
                while running.is_set():
                    try:
                        answers.append(client.infer(CHARS, x, version=2).output)
                    except Exception as exc:
                        errors.append(exc)

            worker = threading.Thread(target=load)
            worker.start()
            add_version(live_repository, CHARS, 1, 3)
            assert eventually(lambda: client.model(CHARS).version == 3)  # the newest answers by default
            assert client.model(CHARS).versions == (1, 2, 3)
            assert model_ready(server.address, CHARS, "3")
            shutil.rmtree(live_repository / CHARS / "1")

            def v1_gone() -> bool:
                try:
                    client.infer(CHARS, x, version=1)
                except NotFoundError:
                    return True
                return False

            assert eventually(v1_gone)
            assert client.model(CHARS).versions == (2, 3)
            assert not model_ready(server.address, CHARS, "1") and model_ready(server.address, CHARS, "2")

            shutil.rmtree(live_repository / DIGITS)  # the whole model: its health turns NOT_SERVING
            assert eventually(
                lambda: health(server.address, DIGITS) == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            assert not model_ready(server.address, DIGITS)
            add_version(live_repository, CHARS, 2, 4)
            assert eventually(lambda: client.model(CHARS).version == 4)
            running.clear()
            worker.join()
        assert not errors, errors[:3]
        assert len(answers) > 10
        for answer in answers:
            np.testing.assert_allclose(answer, want, atol=1e-6, rtol=0)
    finally:
        running.clear()
        server.stop()


def test_sighup_reloads_at_once(live_repository):
    server = ServerProcess(live_repository, "--poll-interval", "0")  # no polling: only the signal
    try:
        add_version(live_repository, CHARS, 2, 5)
        time.sleep(0.3)
        with Client(server.address) as client:
            assert client.model(CHARS).version == 2  # not polled
            server.process.send_signal(signal.SIGHUP)
            assert eventually(lambda: client.model(CHARS).version == 5)
        assert any("loaded chars v5" in line for line in server.log)
    finally:
        assert server.terminate() == 0


def test_a_server_with_no_model_is_not_serving_until_one_arrives(repository, tmp_path):
    """With nothing to serve, overall health says so (a readiness probe keeps the replica out of
    rotation); once a model is dropped in, it serves."""
    root = tmp_path / "empty"
    root.mkdir()
    server = ServerProcess(root, "--poll-interval", "0")
    try:
        assert health(server.address, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        shutil.copytree(repository / DIGITS, root / DIGITS)
        server.process.send_signal(signal.SIGHUP)
        eventually(lambda: health(server.address, "") == health_pb2.HealthCheckResponse.SERVING)
        assert health(server.address, DIGITS) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.terminate() == 0
