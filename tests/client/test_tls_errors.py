"""What a client says when TLS is on one side only or the server's certificate is refused: each of
these ends every call UNAVAILABLE, as a server that is down does, so the message must say which.
Real certificates (tests/certs.py), a real TLS server and the real CLI."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client, UnavailableError, tls_credentials
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer, free_port
from .test_cli import lstmserve

pytest.importorskip("cryptography", reason="pip install cryptography (the dev extra has it)")
from ..certs import Authority  # noqa: E402  (needs cryptography)

X = np.ones((1, 3, 5), np.float32)
MAY_EXPECT_TLS = "the server may expect TLS"
MAY_NOT_SPEAK_TLS = "the server may not speak TLS"
NAME_NOT_CARRIED = "does not carry the host name or IP address this client dialled"
UNKNOWN_CA = "is not signed by the CA this client trusts"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder / "ca"), Authority(folder / "other", "another CA")
    # Made for localhost only, as a user following a guide for a local certificate often does.
    return {"ca": ca, "other": other, "localhost": ca.issue("localhost", server=True, names=("localhost",))}


@pytest.fixture(scope="module")
def tls_server(repository, pki):
    pair = pki["localhost"]
    running = InProcessServer(
        Settings(repository=str(repository), tls_cert=str(pair.cert), tls_key=str(pair.key))
    ).start()
    yield running
    running.stop()


def refusal(target: str, **client_args) -> str:
    with Client(target, timeout=5, **client_args) as client, pytest.raises(UnavailableError) as caught:
        client.infer(CHARS, X, version=1)
    return str(caught.value)


def test_a_plaintext_client_of_a_tls_port_is_told_the_server_may_expect_tls(tls_server):
    assert MAY_EXPECT_TLS in refusal(tls_server.address)
    assert MAY_EXPECT_TLS in refusal(tls_server.address, coalesce=False)

    async def async_refusal() -> str:
        async with AsyncClient(tls_server.address, timeout=5) as client:
            with pytest.raises(UnavailableError) as caught:
                await client.infer(CHARS, X, version=1)
        return str(caught.value)

    assert MAY_EXPECT_TLS in asyncio.run(async_refusal())
    with Client(tls_server.address, timeout=5) as client, pytest.raises(UnavailableError) as caught:
        client.stream(CHARS, version=1, bidi=True).feed(X)
    assert MAY_EXPECT_TLS in str(caught.value)


def test_a_client_without_a_certificate_at_an_mtls_port_is_told_it_may_need_one(repository, pki):
    pair = pki["localhost"]
    settings = Settings(
        repository=str(repository),
        tls_cert=str(pair.cert),
        tls_key=str(pair.key),
        tls_client_ca=str(pki["ca"].cert),
    )
    mutual = InProcessServer(settings).start()
    try:
        message = refusal(f"localhost:{mutual.port}", credentials=tls_credentials(pki["ca"].cert))
    finally:
        mutual.stop()
    assert "or a client certificate" in message and "--tls-cert" in message


def test_a_tls_client_of_a_plaintext_port_is_told_the_server_may_not_speak_tls(server, pki):
    message = refusal(server.address, credentials=tls_credentials(pki["ca"].cert))
    assert MAY_NOT_SPEAK_TLS in message and MAY_EXPECT_TLS not in message


def test_a_certificate_without_the_address_dialled_says_which_names_it_needs(tls_server, pki):
    trusted = tls_credentials(pki["ca"].cert)
    message = refusal(f"127.0.0.1:{tls_server.port}", credentials=trusted)
    assert NAME_NOT_CARRIED in message and "IP:127.0.0.1" in message and "--tls-server-name" in message
    # What the message offers works: a name the certificate carries, or checking that name instead.
    with Client(f"localhost:{tls_server.port}", credentials=trusted, timeout=5) as by_name:
        assert by_name.infer(CHARS, X, version=1).output.shape == (1, 3, 7)
    override = [("grpc.ssl_target_name_override", "localhost")]
    with Client(tls_server.address, credentials=trusted, options=override, timeout=5) as checked:
        assert checked.infer(CHARS, X, version=1).output.shape == (1, 3, 7)


def test_a_certificate_from_another_ca_says_so(tls_server, pki):
    message = refusal(f"localhost:{tls_server.port}", credentials=tls_credentials(pki["other"].cert))
    assert UNKNOWN_CA in message and NAME_NOT_CARRIED not in message


def test_a_server_that_is_down_gets_no_tls_hint(pki):
    for credentials in (None, tls_credentials(pki["ca"].cert)):
        message = refusal(f"127.0.0.1:{free_port()}", credentials=credentials)
        assert "Connection refused" in message and "TLS" not in message and "certificate" not in message


def test_the_cli_against_a_localhost_certificate_at_127_0_0_1(tls_server, pki, tmp_path):
    np.save(tmp_path / "x.npy", X)
    args = ["infer", "--model", CHARS, "--input", str(tmp_path / "x.npy"), "--server", tls_server.address]
    refused = lstmserve(*args, "--tls-ca", str(pki["ca"].cert))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert NAME_NOT_CARRIED in refused.stderr and "--tls-server-name" in refused.stderr
    named = lstmserve(*args, "--tls-ca", str(pki["ca"].cert), "--tls-server-name", "localhost")
    assert named.returncode == 0, named.stderr
    plaintext = lstmserve(*args)
    assert plaintext.returncode == 2 and MAY_EXPECT_TLS in plaintext.stderr
