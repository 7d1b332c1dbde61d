"""The HTTP port's security is the gRPC port's: bearer tokens (401 with WWW-Authenticate, 403 and 404
per the token's scope, as gRPC's PERMISSION_DENIED and NOT_FOUND), health open to probes; TLS and
mTLS from the same files, and a certificate replaced on disk served to new connections at once."""

from __future__ import annotations

import shutil

import grpc
import numpy as np
import pytest
import requests

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer
from .rest_calls import infer, infer_body, model_path, session

pytest.importorskip("cryptography", reason="pip install cryptography (the dev extra has it)")
from ..certs import Authority  # noqa: E402  (needs cryptography)

ADMIN, CHARS_ONLY = "admin-token-0123456789", "chars-token-0123456789"
X, DIGIT = np.ones((1, 3, 5), np.float32), np.ones((1, 8, 8), np.float32)
HTTP_STATUS = {  # what each gRPC status is over HTTP
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
}


@pytest.fixture(scope="module")
def secured(repository, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(f"{ADMIN}\n{CHARS_ONLY} {CHARS} ghost  # ghost is not served\n")
    server = InProcessServer(Settings(repository=str(repository), auth_tokens=str(tokens))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(secured):
    with session() as made:
        yield made


def get(url: str, verify: str | bool = True, cert: tuple[str, str] | None = None) -> requests.Response:
    """One GET on a connection of its own (its own TLS handshake)."""
    with session(verify, cert) as made:
        return made.get(url, timeout=5)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_health_is_open_and_everything_else_wants_a_token(secured, http):
    url = secured.http_url
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert http.get(url + path, timeout=5).status_code == 200
    body, headers = infer_body({"input": X})
    calls = [  # method, path, body, the status with the admin's token
        ("GET", "/v2", b"", 200),
        ("GET", model_path(CHARS), b"", 200),
        ("GET", model_path(CHARS) + "/ready", b"", 200),
        ("POST", model_path(CHARS) + "/infer", body, 200),
        ("POST", model_path(CHARS) + "/generate_stream", b'{"text_input": "a"}', 400),  # not generative
    ]
    refusals = [  # the authorization header sent, what the 401 says
        ({}, "send the header 'Authorization: Bearer <token>'"),
        ({"Authorization": CHARS_ONLY}, "send the header 'Authorization: Bearer <token>'"),
        (bearer("not-a-token-at-all-00000"), "the bearer token is not valid here"),
    ]
    for method, path, data, status in calls:
        for sent, words in refusals:
            answer = http.request(method, url + path, data=data, headers={**headers, **sent}, timeout=5)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert answer.headers["www-authenticate"] == "Bearer" and words in answer.json()["error"]
        answer = http.request(method, url + path, data=data, headers={**headers, **bearer(ADMIN)}, timeout=5)
        assert answer.status_code == status, (method, path, answer.text)


def kserve_status(server, token: str, call) -> grpc.StatusCode:
    """The status of the same call over KServe gRPC, with the same token."""
    with grpc.insecure_channel(server.address) as channel:
        try:
            call(kserve_grpc.GRPCInferenceServiceStub(channel), (("authorization", f"Bearer {token}"),))
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def grpc_infer(model: str, x: np.ndarray):
    request = kserve.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.tobytes())
    return lambda stub, metadata: stub.ModelInfer(request, timeout=5, metadata=metadata)


@pytest.mark.parametrize(
    ("model", "status"),
    [(CHARS, 200), (DIGITS, 403), ("no-such-model", 403), ("ghost", 404)],
)
def test_a_token_reaches_its_models_only_as_over_grpc(secured, http, model, status):
    """A model outside the scope is 403 whether or not it is served; one inside it but not served is
    404, and the message names only the models in the scope."""
    url, headers = secured.http_url, bearer(CHARS_ONLY)
    body, sent = infer_body({"input": X})
    answers = [
        http.get(url + model_path(model), headers=headers, timeout=5),
        http.post(f"{url}{model_path(model)}/infer", data=body, headers={**sent, **headers}, timeout=5),
    ]
    for answer in answers:
        assert answer.status_code == status, answer.text
    if status == 404:
        error = answers[1].json()["error"]
        assert CHARS in error and DIGITS not in error
    if status == 403:
        assert "this token may not call model" in answers[1].json()["error"]
    metadata = kserve_status(
        secured,
        CHARS_ONLY,
        lambda stub, md: stub.ModelMetadata(kserve.ModelMetadataRequest(name=model), metadata=md),
    )
    assert HTTP_STATUS[metadata] == status
    assert HTTP_STATUS[kserve_status(secured, CHARS_ONLY, grpc_infer(model, X))] == status


def test_model_ready_outside_the_scope_is_403_as_over_grpc(secured, http):
    url = secured.http_url
    assert (
        http.get(f"{url}{model_path(CHARS)}/ready", headers=bearer(CHARS_ONLY), timeout=5).status_code == 200
    )
    answer = http.get(f"{url}{model_path(DIGITS)}/ready", headers=bearer(CHARS_ONLY), timeout=5)
    ready = lambda stub, md: stub.ModelReady(kserve.ModelReadyRequest(name=DIGITS), metadata=md)  # noqa: E731
    assert answer.status_code == HTTP_STATUS[kserve_status(secured, CHARS_ONLY, ready)] == 403


def test_a_state_from_outside_the_scope_is_409_and_not_named(secured, http):
    digits = infer(http, secured.http_url, DIGITS, {"input": DIGIT}, headers=bearer(ADMIN))
    body, sent = infer_body({"input": X, **digits.state()}, fingerprint=digits.fingerprint)
    answer = http.post(
        f"{secured.http_url}{model_path(CHARS)}/infer",
        data=body,
        headers={**sent, **bearer(CHARS_ONLY)},
        timeout=5,
    )
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert "a model not served here" in error and DIGITS not in error


# TLS: a CA and the server's certificate from it; another CA, its server certificate and a client's.


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder / "ca"), Authority(folder / "other", "another CA")
    return {
        "ca": ca.cert,
        "other": other.cert,
        "server": ca.issue("server", server=True),
        "client": ca.issue("client", server=False),
        "other server": other.issue("other server", server=True),
        "stranger": other.issue("stranger", server=False),
    }


def serve_tls(repository, pki, folder, mutual: bool = False) -> InProcessServer:
    """A server whose certificate files live in `folder` (so a test can replace them)."""
    shutil.copy(pki["server"].cert, folder / "tls.crt")
    shutil.copy(pki["server"].key, folder / "tls.key")
    settings = Settings(
        repository=str(repository),
        tls_cert=str(folder / "tls.crt"),
        tls_key=str(folder / "tls.key"),
        tls_client_ca=str(pki["ca"]) if mutual else "",
    )
    return InProcessServer(settings).start()


def https(server, host: str = "localhost") -> str:
    return f"https://{host}:{server.http_port}"


def test_the_http_port_speaks_tls_only(repository, pki, tmp_path):
    server = serve_tls(repository, pki, tmp_path)
    try:
        with session(str(pki["ca"])) as made:
            assert infer(made, https(server), CHARS, {"input": X}).arrays["output"].shape == (1, 3, 7)
        with pytest.raises(requests.exceptions.SSLError):  # a server the client's CA did not sign
            get(https(server) + "/v2/health/live", str(pki["other"]))
        with pytest.raises(requests.exceptions.ConnectionError):  # plaintext: no answer at all
            get(f"http://127.0.0.1:{server.http_port}/v2/health/live")
    finally:
        server.stop()


def test_mtls_needs_a_client_certificate_from_the_client_ca(repository, pki, tmp_path):
    server = serve_tls(repository, pki, tmp_path, mutual=True)
    url, ca = https(server), str(pki["ca"])
    try:
        pair = pki["client"]
        assert get(url + "/v2/health/ready", ca, (str(pair.cert), str(pair.key))).status_code == 200
        stranger = pki["stranger"]
        for cert in (None, (str(stranger.cert), str(stranger.key))):  # none, or one the CA did not sign
            with pytest.raises(requests.exceptions.ConnectionError):
                get(url + "/v2/health/ready", ca, cert)
    finally:
        server.stop()


def test_a_certificate_replaced_on_disk_serves_new_connections(repository, pki, tmp_path):
    """As Kubernetes rotates a Secret: new connections get the new certificate (with SNI or, by IP
    address, without), no restart; a connection already open goes on."""
    server = serve_tls(repository, pki, tmp_path)
    try:
        with session(str(pki["ca"])) as before:
            assert before.get(https(server) + "/v2", timeout=5).status_code == 200  # connected
            for source, name in ((pki["other server"].cert, "tls.crt"), (pki["other server"].key, "tls.key")):
                shutil.copy(source, tmp_path / f".{name}.new")
            (tmp_path / ".tls.key.new").replace(tmp_path / "tls.key")
            (tmp_path / ".tls.crt.new").replace(tmp_path / "tls.crt")
            for host in ("localhost", "127.0.0.1"):
                assert get(https(server, host) + "/v2", str(pki["other"])).status_code == 200
                with pytest.raises(requests.exceptions.SSLError):
                    get(https(server, host) + "/v2", str(pki["ca"]))
            assert before.get(https(server) + "/v2", timeout=5).status_code == 200  # the same connection
    finally:
        server.stop()
