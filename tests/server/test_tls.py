"""TLS and mTLS on the serving port, with real certificates: both protocols, health and reflection
over TLS; the wrong CA, plaintext and a missing client certificate refused; certificates replaced
under load without a restart and without a failed call; tritonclient over TLS."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lstmserve.client import Client, ServerError, UnavailableError, tls_credentials
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer, free_port

pytest.importorskip("cryptography", reason="pip install cryptography (the dev extra has it)")
from ..certs import Authority  # noqa: E402  (needs cryptography)

X = np.ones((1, 3, 5), np.float32)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two CAs; from the first a server certificate (localhost, 127.0.0.1) and a client's; from the
    second a server certificate and a client's that the first CA does not vouch for."""
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder / "ca"), Authority(folder / "other", "another CA")
    return {
        "ca": ca,
        "other": other,
        "server": ca.issue("server", server=True),
        "client": ca.issue("client", server=False),
        "other server": other.issue("other server", server=True),
        "stranger": other.issue("stranger", server=False),
    }


def serve(
    repository, pki, tmp_path, mutual: bool = False, tokens: str = "", health_port: int = 0
) -> InProcessServer:
    """A server whose certificate files live in their own folder (so a test can replace them)."""
    live = tmp_path / "tls"
    live.mkdir(exist_ok=True)
    shutil.copy(pki["server"].cert, live / "tls.crt")
    shutil.copy(pki["server"].key, live / "tls.key")
    settings = Settings(
        repository=str(repository),
        tls_cert=str(live / "tls.crt"),
        tls_key=str(live / "tls.key"),
        tls_client_ca=str(pki["ca"].cert) if mutual else "",
        auth_tokens=tokens,
        health_port=health_port,
    )
    return InProcessServer(settings).start()


def tls_client(server, ca, pair=None, timeout=10, token=None) -> Client:
    credentials = tls_credentials(ca, *((pair.cert, pair.key) if pair else (None, None)))
    # Each client its own connection (gRPC would share one among identical channels): its own handshake.
    own = [("grpc.use_local_subchannel_pool", 1)]
    return Client(
        f"localhost:{server.port}", credentials=credentials, timeout=timeout, token=token, options=own
    )


def test_both_protocols_health_and_reflection_speak_tls(repository, pki, tmp_path):
    server = serve(repository, pki, tmp_path)
    try:
        with tls_client(server, pki["ca"].cert) as client:
            assert client.infer(CHARS, X).output.shape == (1, 3, 7)
        credentials = tls_credentials(pki["ca"].cert)
        with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]))
            services = {s.name for s in next(answers).list_services_response.service}
            assert {"lstmserve.v1.LSTMService", "inference.GRPCInferenceService"} <= services
    finally:
        server.stop()


def test_the_wrong_ca_and_plaintext_are_refused(repository, pki, tmp_path):
    server = serve(repository, pki, tmp_path)
    try:
        with tls_client(server, pki["other"].cert, timeout=3) as client, pytest.raises(UnavailableError):
            client.infer(CHARS, X)
        with Client(f"localhost:{server.port}", timeout=3) as plain, pytest.raises(UnavailableError):
            plain.infer(CHARS, X)
    finally:
        server.stop()


def test_mtls_needs_a_client_certificate_from_the_client_ca(repository, pki, tmp_path):
    server = serve(repository, pki, tmp_path, mutual=True)
    try:
        with tls_client(server, pki["ca"].cert, pki["client"]) as client:
            assert client.infer(CHARS, X).output.shape == (1, 3, 7)
        for pair in (None, pki["stranger"]):  # none at all, or one the client CA did not sign
            with tls_client(server, pki["ca"].cert, pair, timeout=3) as client:
                with pytest.raises(UnavailableError):
                    client.infer(CHARS, X)
    finally:
        server.stop()


def test_certificates_replaced_under_load_serve_new_connections_and_drop_no_call(repository, pki, tmp_path):
    """The Secret's files replaced while a client calls in a loop: its open connection goes on (every
    call OK), new connections get the new certificate (trusted by the other CA only), no restart."""
    server = serve(repository, pki, tmp_path)
    both = tmp_path / "both-cas.pem"
    both.write_bytes(pki["ca"].cert.read_bytes() + pki["other"].cert.read_bytes())
    codes: list[str] = []
    done = threading.Event()

    def hammer() -> None:
        with tls_client(server, both) as client:
            while not done.is_set():
                try:
                    client.infer(CHARS, X)
                    codes.append("OK")
                except Exception as exc:  # any failure is the test's finding
                    codes.append(repr(exc))

    caller = threading.Thread(target=hammer)
    try:
        caller.start()
        time.sleep(0.5)
        live = tmp_path / "tls"
        # As Kubernetes does for a Secret: the new files appear at once (a rename each).
        for source, name in ((pki["other server"].cert, "tls.crt"), (pki["other server"].key, "tls.key")):
            shutil.copy(source, live / f".{name}.new")
        (live / ".tls.key.new").replace(live / "tls.key")
        (live / ".tls.crt.new").replace(live / "tls.crt")
        time.sleep(0.5)
        with tls_client(server, pki["other"].cert) as fresh:
            assert fresh.infer(CHARS, X).output.shape == (1, 3, 7)
        with tls_client(server, pki["ca"].cert, timeout=3) as old, pytest.raises(UnavailableError):
            old.infer(CHARS, X)
        time.sleep(0.3)
    finally:
        done.set()
        caller.join(30)
        server.stop()
    assert set(codes) == {"OK"} and len(codes) > 20, codes[:5]


TRITON = """
import json, sys
import numpy as np
import tritonclient.grpc as triton
url, ca, cert, key, model, token = sys.argv[1:7]
with triton.InferenceServerClient(url, ssl=True, root_certificates=ca, private_key=key,
                                  certificate_chain=cert) as client:
    x = np.ones((1, 8, 8), np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(model, [tensor], headers={"authorization": f"Bearer {token}"})
    print(json.dumps(result.as_numpy("logits").tolist()))
"""


def test_tritonclient_over_mtls_with_a_token(repository, pki, tmp_path):
    # Not imported here: its `inference` stubs cannot share a process with the server's.
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("pip install tritonclient[grpc] (the dev extra has it)")
    token = "triton-token-0123456789"
    (tmp_path / "tokens").write_text(f"{token} {DIGITS}\n")
    server = serve(repository, pki, tmp_path, mutual=True, tokens=str(tmp_path / "tokens"))
    try:
        pair = pki["client"]
        done = subprocess.run(
            [sys.executable, "-c", TRITON, f"localhost:{server.port}", str(pki["ca"].cert), str(pair.cert)]
            + [str(pair.key), DIGITS, token],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        with tls_client(server, pki["ca"].cert, pair, token=token) as client:
            want = client.infer(DIGITS, np.ones((1, 8, 8), np.float32)).logits
        np.testing.assert_array_equal(np.array(json.loads(done.stdout), np.float32), want)
    finally:
        server.stop()


def test_probes_get_plaintext_health_on_the_health_port_and_nothing_else(repository, pki, tmp_path):
    """Kubernetes' gRPC probes speak plaintext and send no token: --health-port serves them health,
    and only health, while the serving port speaks mTLS and wants a token."""
    (tmp_path / "tokens").write_text("probe-test-token-0123456789\n")
    port = free_port()
    server = serve(repository, pki, tmp_path, mutual=True, tokens=str(tmp_path / "tokens"), health_port=port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for service in ("", "lstmserve.v1.LSTMService", CHARS):
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=5
                )
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
            with Client(f"127.0.0.1:{port}", timeout=5) as plain, pytest.raises(ServerError) as caught:
                plain.infer(CHARS, X)
            assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED  # nothing but health there
    finally:
        server.stop()


def test_a_mismatched_or_broken_pair_keeps_the_current_one_and_says_so_once(
    repository, pki, tmp_path, caplog
):
    """The key replaced by another certificate's, then the certificate cut short: new connections
    still get the current pair, and each bad version of the files is reported once, not per handshake."""
    server = serve(repository, pki, tmp_path)
    live = tmp_path / "tls"
    try:
        with caplog.at_level(logging.INFO, logger="lstmserve.server"):
            shutil.copy(pki["other server"].key, live / ".key.new")
            (live / ".key.new").replace(live / "tls.key")  # the key no longer fits the certificate
            for _ in range(3):  # three new connections: three handshakes
                with tls_client(server, pki["ca"].cert) as client:
                    assert client.infer(CHARS, X).output.shape == (1, 3, 7)
            (live / "tls.crt").write_bytes(pki["server"].cert.read_bytes()[:200])  # half-written
            for _ in range(3):
                with tls_client(server, pki["ca"].cert) as client:
                    assert client.infer(CHARS, X).output.shape == (1, 3, 7)
        lines = [r.getMessage() for r in caplog.records if r.name == "lstmserve.server"]
        refused = [line for line in lines if "cannot be used" in line]
        assert len(refused) == 2, lines  # one per bad version of the files
        assert "does not belong to the certificate" in refused[0]
        assert not any("new connections get" in line for line in lines), lines
    finally:
        server.stop()
