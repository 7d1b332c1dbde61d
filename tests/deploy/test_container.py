"""The image, built and run for real with podman: small, torch-free, non-root, healthy, graceful."""

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from lstmserve.client import AuthenticationError, Client, UnavailableError, tls_credentials
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


def as_deployed() -> tuple[list[str], int, list[str]]:
    """podman flags that run the container as deploy/kubernetes/deployment.yaml does: a read-only root
    filesystem with nothing writable but the Deployment's emptyDir mounts (podman's --read-only alone
    would add tmpfs on /tmp, /var/tmp and /run), its user and group, no capabilities, no privilege
    escalation. Returns the flags, the uid and the writable paths."""
    manifest = yaml.safe_load((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    writable = [mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] in empty_dirs]
    flags = ["--read-only", "--read-only-tmpfs=false", "--user", f"{uid}:{gid}", "--cap-drop", "ALL"]
    flags += ["--security-opt", "no-new-privileges"]
    for path in writable:
        flags += ["--tmpfs", f"{path}:rw,mode=1777"]  # an emptyDir: empty, writable, the pod's own
    return flags, uid, writable


class Container:
    def __init__(self, image: str, *args: str):
        self.name = f"lstmserve-test-{free_port()}"
        self.port, self.http_port = free_port(), free_port()
        ports = ["-p", f"127.0.0.1:{self.port}:50051", "-p", f"127.0.0.1:{self.http_port}:8080"]
        pm.podman("run", "-d", "--name", self.name, *ports, *args, image)
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
    sealing = "from cryptography.hazmat.primitives.ciphers.aead import AESGCM"  # --state-key-file
    done = pm.podman("run", "--rm", "--entrypoint", "python", image, "-c", sealing, check=False)
    assert done.returncode == 0, done.stderr


def test_container_runs_as_the_deployment_runs_it(image):
    """PID 1 is the server, as the Deployment's and the Dockerfile's non-root user; the root
    filesystem is read-only (a write fails with EROFS even as root, so not for want of permission);
    only the Deployment's emptyDir mounts can be written; and it serves like that."""
    flags, uid, writable = as_deployed()
    assert writable == ["/tmp"]
    dockerfile_user = re.search(r"^USER (\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None and int(dockerfile_user.group(1)) == uid != 0
    container = Container(image, *flags)
    try:
        status = pm.podman("exec", container.name, "cat", "/proc/1/status").stdout
        assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
        assert re.search(r"^CapEff:\s+0+$", status, re.M), status  # no capabilities
        argv = [
            arg
            for arg in pm.podman("exec", container.name, "cat", "/proc/1/cmdline").stdout.split("\0")
            if arg
        ]
        assert Path(argv[-2]).name == "lstmserve" and argv[-1] == "serve", argv  # the server is PID 1
        for folder in ("/", "/models", "/var/tmp", "/run", "/usr/local/lib", "/etc"):
            write = f"echo x > {folder.rstrip('/')}/probe"
            done = pm.podman("exec", "--user", "0", container.name, "sh", "-c", write, check=False)
            assert done.returncode != 0 and "Read-only file system" in done.stderr, (folder, done)
        for folder in writable:  # the server's user can write there
            done = pm.podman("exec", container.name, "sh", "-c", f"echo x > {folder}/probe", check=False)
            assert done.returncode == 0, (folder, done.stderr)
        assert pm.podman("healthcheck", "run", container.name, check=False).returncode == 0
        with Client(container.address) as client:
            grpc_logits = client.infer(DIGITS, np.zeros((1, 8, 8), np.float32)).logits
        # HTTP too, on the image's 8080: the same answer as gRPC's
        http = f"http://127.0.0.1:{container.http_port}/v2"
        assert urllib.request.urlopen(f"{http}/health/ready", timeout=10).status == 200
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8, 8], "data": [0.0] * 64}]}
        request = urllib.request.Request(f"{http}/models/{DIGITS}/infer", json.dumps(body).encode())
        answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
        logits = next(output for output in answer["outputs"] if output["name"] == "logits")
        np.testing.assert_array_equal(np.array(logits["data"], np.float32).reshape(1, 10), grpc_logits)
        # The console ships in the image: its page and a module it loads (package data, not the tree).
        page = urllib.request.urlopen(f"http://127.0.0.1:{container.http_port}/", timeout=10)
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert b'src="/console/app.js"' in page.read()
        module = urllib.request.urlopen(f"http://127.0.0.1:{container.http_port}/console/app.js", timeout=10)
        assert module.headers["content-type"].startswith("text/javascript")
        log = container.logs()
        assert "Traceback" not in log and " ERROR " not in log, log
    finally:
        container.remove()


def test_container_streams_a_digit_and_stops_gracefully(image):
    container = Container(image, *as_deployed()[0])
    try:
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


def test_container_serves_tls_and_tokens_from_mounted_secrets(image, tmp_path):
    """As the Deployment runs it: certificate, key and tokens mounted read-only where its variables
    say, probes on the plaintext health port, a call over TLS with a token, none without one."""
    from ..certs import Authority

    manifest = yaml.safe_load((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    (container_spec,) = manifest["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container_spec["env"]}
    folder = Path(tempfile.mkdtemp(prefix="lstmserve-secrets-"))
    ca = Authority(tmp_path / "ca")
    pair = ca.issue("server", server=True)
    secrets = {"LSTMSERVE_TLS_CERT": pair.cert, "LSTMSERVE_TLS_KEY": pair.key}
    token = "container-token-0123456789"
    (tmp_path / "tokens").write_text(f"{token}\n")
    secrets["LSTMSERVE_AUTH_TOKENS"] = tmp_path / "tokens"
    mounts: dict[str, Path] = {}
    for variable, source in secrets.items():  # each file where the Deployment's variable points
        inside = Path(env[variable])
        host = mounts.setdefault(str(inside.parent), folder / inside.parent.name)
        host.mkdir(exist_ok=True)
        shutil.copy(source, host / inside.name)
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)  # readable by the image's user
    args = [*as_deployed()[0]]
    for inside, host in mounts.items():
        args += ["-v", f"{host}:{inside}:ro"]
    for variable in (*secrets, "LSTMSERVE_HEALTH_PORT"):
        args += ["-e", f"{variable}={env[variable]}"]
    container = Container(image, *args)
    try:
        assert "over TLS, tokens" in container.logs()
        assert pm.podman("healthcheck", "run", container.name, check=False).returncode == 0  # health port
        address = f"localhost:{container.port}"
        x = np.zeros((1, 8, 8), np.float32)
        with Client(address, credentials=tls_credentials(ca.cert), token=token) as client:
            assert client.infer(DIGITS, x).logits.shape == (1, 10)
        with Client(address, credentials=tls_credentials(ca.cert)) as anonymous:
            with pytest.raises(AuthenticationError):
                anonymous.infer(DIGITS, x)
        with Client(container.address, timeout=3) as plaintext, pytest.raises(UnavailableError):
            plaintext.infer(DIGITS, x)
    finally:
        container.remove()
        shutil.rmtree(folder, ignore_errors=True)
