"""The CUDA image (make image-cuda), built and run for real with podman on a machine without a GPU:
it serves on the CPU with one clear warning, not a crash. Its size is printed."""

import time

import numpy as np
import pytest

from lstmserve.client import Client

from ..conftest import DIGITS, REPO
from . import podman as pm
from .test_container import Container

TAG = "localhost/lstmserve:test-cuda"

why_not = pm.missing()
pytestmark = pytest.mark.skipif(why_not is not None, reason=f"podman tests skipped: {why_not}")


@pytest.fixture(scope="module")
def image():
    started = time.monotonic()
    pm.build(REPO, TAG, REQUIREMENTS="deploy/requirements-serve-cuda.txt", DEVICE="cuda")
    print(f"CUDA image built in {time.monotonic() - started:.0f} s, {pm.image_mb(TAG):.0f} MB")
    yield TAG
    pm.podman("rmi", "-f", TAG, check=False)  # about 3 GB: not kept between runs


def test_cuda_image_has_onnxruntime_gpu_and_no_torch(image):
    probe = (
        "import importlib.util as u, onnxruntime as o, sys; "
        "sys.exit(u.find_spec('torch') is not None or 'CUDAExecutionProvider' not in "
        "o.get_available_providers())"
    )
    done = pm.podman("run", "--rm", "--entrypoint", "python", image, "-c", probe, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert pm.image_mb(image) < 4000


def test_without_a_gpu_it_serves_on_the_cpu_with_one_warning(image):
    container = Container(image)
    try:
        logs = container.logs()
        warnings = [line for line in logs.splitlines() if "WARNING" in line and "cuda" in line.lower()]
        assert len(warnings) == 1, logs[-3000:]
        assert "serving on the CPU" in warnings[0] or "using cpu" in warnings[0]
        with Client(container.address) as client:
            assert client.infer(DIGITS, np.zeros((1, 8, 8), np.float32)).logits.shape == (1, 10)
            assert client.model(DIGITS).provider == "CPUExecutionProvider"
        pm.podman("stop", "-t", "10", container.name)
        assert container.exit_code() == 0  # SIGTERM: drained and stopped, as the CPU image does
    finally:
        container.remove()
