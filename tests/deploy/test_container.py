"""The image, built and run for real with podman: small, torch-free, non-root, healthy, graceful."""

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from lstmserve.client import Client
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from ..conftest import CHARS, DIGITS, REPO
from ..servers import free_port
from . import podman as pm

TAG = "localhost/lstmserve:test"

why_not = pm.missing()
pytestmark = pytest.mark.skipif(why_not is not None, reason=f"podman tests skipped: {why_not}")


@pytest.fixture(scope="module")
def image():
    if not (REPO / "models" / "digits" / "1" / "model.onnx").exists():
        pytest.fail("the image bakes in models/: run `make model` first (make test does)")
    started = time.monotonic()
    pm.build(REPO, TAG)
    print(f"image built in {time.monotonic() - started:.0f} s, {pm.image_mb(TAG):.0f} MB")
    return TAG


class Container:
    def __init__(self, image: str, *args: str):
        self.name = f"lstmserve-test-{free_port()}"
        self.port = free_port()
        pm.podman("run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:50051", *args, image)
        deadline = time.monotonic() + 60
        while "listening on" not in self.logs():
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def logs(self) -> str:
        return pm.podman("logs", self.name, check=False).stderr

    def exit_code(self) -> int:
        return int(pm.podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def remove(self) -> None:
        pm.podman("rm", "-f", "-t", "0", self.name, check=False)


def test_image_is_small_and_has_no_torch(image):
    assert pm.image_mb(image) <= 400
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
    done = pm.podman("run", "--rm", "--entrypoint", "python", image, "-c", probe, check=False)
    assert done.returncode == 0, "torch is in the image"


def test_container_streams_a_digit_and_stops_gracefully(image):
    container = Container(image, "--read-only")  # as the Deployment runs it
    try:
        assert pm.podman("exec", container.name, "id", "-u").stdout.strip() == "10001"  # not root
        assert pm.podman("healthcheck", "run", container.name, check=False).returncode == 0
        assert "listening on 0.0.0.0:50051" in container.logs()
        digit = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
        with Client(container.address) as client:
            whole = client.infer(DIGITS, digit)
            stream = client.stream(DIGITS, bidi=True)
            for row in range(4):
                stream.feed(digit[:, row : row + 1])
            stopper = threading.Thread(target=pm.podman, args=("stop", "-t", "20", container.name))
            stopper.start()  # SIGTERM to PID 1, the server
            deadline = time.monotonic() + 20
            while "stopping" not in container.logs():
                assert time.monotonic() < deadline, container.logs()
                time.sleep(0.05)
            for row in range(4, 8):  # the call in flight is still answered
                last = stream.feed(digit[:, row : row + 1])
            stream.close()
            stopper.join(30)
        np.testing.assert_allclose(last.logits, whole.logits, atol=1e-6, rtol=0)
        assert container.exit_code() == 0
        assert "stopped:" in container.logs()
    finally:
        container.remove()


def test_container_serves_a_mounted_repository(image, repository):
    # The container's user (10001) must be able to read what is mounted.
    folder = Path(tempfile.mkdtemp(prefix="lstmserve-models-"))
    shutil.copytree(repository, folder / "models")
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    container = Container(image, "-v", f"{folder / 'models'}:/models:ro", "-e", "LSTMSERVE_MAX_BATCH_ROWS=8")
    try:
        with Client(container.address) as client:
            assert {(m.name, m.version) for m in client.models()} == {(DIGITS, 1), (CHARS, 1), (CHARS, 2)}
        with grpc.insecure_channel(container.address) as channel:  # KServe v2 on the image's protobuf
            stub = kserve_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelReady(kserve.ModelReadyRequest(name=CHARS, version="2")).ready
            assert list(stub.ModelMetadata(kserve.ModelMetadataRequest(name=CHARS)).versions) == ["1", "2"]
        assert "batches of up to 8 rows" in container.logs()  # LSTMSERVE_* settings from the environment
    finally:
        container.remove()
        shutil.rmtree(folder, ignore_errors=True)
